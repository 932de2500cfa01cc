package main

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// releaseVersion is the upstream version of debian/changelog's top entry
// (0.1.0-1 gives 0.1.0); TestVersionMatchesChangelog keeps them equal.
const releaseVersion = "0.1.0"

// Set at build time with -ldflags "-X main.versionOverride=... -X
// main.commitOverride=...": versionOverride by a build of another version
// than the changelog's (test builds), commitOverride where Go cannot stamp
// the commit itself (-buildvcs=false in the package build).
var versionOverride, commitOverride string

// version is the one version string of this binary, the same for go build,
// make build and the package of one commit: debian/changelog's upstream
// version, unless a build for another version set versionOverride.
func version() string {
	if versionOverride != "" {
		return versionOverride
	}
	return releaseVersion
}

// commit is the short commit hash (".dirty" for a modified tree) as go
// build stamped it or the build set it, or "".
func commit() string {
	if commitOverride != "" {
		return commitOverride
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += ".dirty"
	}
	return rev
}

var versionCmd = &subcommand{
	name:    "version",
	summary: "print the version (and the commit and Go release it was built with)",
	flags: func(fs *flag.FlagSet) func(*cli, []string) int {
		return func(cl *cli, args []string) int {
			if len(args) > 0 {
				return cl.usageError("unexpected argument %q", args[0])
			}
			fmt.Fprintf(cl.stdout, "picockpit-client %s\n", version())
			built := fmt.Sprintf("built with %s for %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if c := commit(); c != "" {
				built += " from commit " + c
			}
			fmt.Fprintln(cl.stdout, built)
			return 0
		}
	},
}
