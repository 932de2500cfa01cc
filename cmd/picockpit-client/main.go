// Command picockpit-client is the picockpit agent: run, check, version.
package main

import (
	"fmt"
	"os"
	"runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// Keep the main goroutine on the main thread, so that no goroutine that
	// changed its thread's credentials can ever land on the process leader.
	runtime.LockOSThread()
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("picockpit-client", version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: picockpit-client run|check|version")
	os.Exit(2)
}
