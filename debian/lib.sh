# Shared helpers for debian/build-deb.sh, debian/build-repo.sh and
# debian/test-deb.sh. Sourced, not executed. POSIX-ish bash.

PKG=picockpit-client

log() { printf '%s\n' "[$(date -u +%H:%M:%S)] $*" >&2; }
die() { printf '%s\n' "ERROR: $*" >&2; exit 1; }

# ensure_tools CMD:PACKAGE ... installs the Debian packages that provide the
# missing commands (as root, with apt-get), or fails with a clear message.
ensure_tools() {
	missing=""
	for pair in "$@"; do
		cmd=${pair%%:*}
		pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		die "missing tools; install these Debian packages:$missing"
	fi
	log "apt-get install:$missing"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q --no-install-recommends $missing >/tmp/$PKG-apt-install.log 2>&1; then
		apt-get update -q >>/tmp/$PKG-apt-install.log 2>&1 || true
		apt-get install -y -q --no-install-recommends $missing >>/tmp/$PKG-apt-install.log 2>&1 ||
			{ tail -20 /tmp/$PKG-apt-install.log >&2; die "apt-get install$missing failed"; }
	fi
}

# changelog_field FIELD prints a field of the top debian/changelog entry
# (Version, Distribution, Maintainer, Date) without needing dpkg-dev.
changelog_field() {
	case "$1" in
	Version) sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' debian/changelog ;;
	Distribution) sed -n '1s/^[^ ]* ([^)]*) \([^;]*\);.*/\1/p' debian/changelog ;;
	Maintainer) sed -n 's/^ -- \(.*>\)  .*/\1/p' debian/changelog | head -n1 ;;
	Date) sed -n 's/^ -- .*>  \(.*\)$/\1/p' debian/changelog | head -n1 ;;
	esac
}

# compute_versions sets UPSTREAM_VERSION (what the binary reports, the
# changelog's upstream version unless VERSION asks for another), and
# DEB_VERSION (the package version). VERSION from the environment wins over
# debian/changelog; a leading "v" is dropped and "-" becomes "+" for the
# package version (git describe: v0.2.0-3-gabc -> 0.2.0+3+gabc-1).
compute_versions() {
	cl_version=$(changelog_field Version)
	[ -n "$cl_version" ] || die "cannot read the version from debian/changelog"
	# The changelog's own version, given as upstream (0.1.0) or in full
	# (0.1.0-1), is that release: no automatic changelog entry.
	if [ "${VERSION:-}" = "${cl_version%-*}" ] || [ "${VERSION:-}" = "$cl_version" ]; then
		VERSION=""
	fi
	if [ -z "${VERSION:-}" ]; then
		UPSTREAM_VERSION=${cl_version%-*}
		DEB_VERSION=$cl_version
	else
		UPSTREAM_VERSION=$VERSION
		up=${VERSION#v}
		up=$(printf '%s' "$up" | tr -- '-_' '++')
		case "$up" in
		[0-9]*) ;;
		*)
			# "dev", a bare commit hash...: sorts below every release
			up="0~$up"
			log "WARNING: VERSION=$VERSION does not start with a digit: package version $up"
			;;
		esac
		printf '%s' "$up" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$' ||
			die "VERSION=$VERSION gives an invalid Debian version ($up)"
		DEB_VERSION="$up-${DEB_REVISION:-1}"
	fi
	export UPSTREAM_VERSION DEB_VERSION
}

# source_commit prints the short commit of the source tree (".dirty" when
# it has uncommitted changes), or nothing outside git; the binary shows it
# in `picockpit-client version`.
source_commit() {
	local c
	c=$(git -c safe.directory='*' rev-parse --short=12 HEAD 2>/dev/null) || return 0
	[ -z "$(git -c safe.directory='*' status --porcelain 2>/dev/null)" ] || c="$c.dirty"
	printf '%s' "$c"
}

# go_env_for ARCH prints the GOARCH/GOARM for a Debian architecture.
go_env_for() {
	case "$1" in
	armhf) echo "GOARCH=arm GOARM=6" ;;
	arm64) echo "GOARCH=arm64" ;;
	amd64) echo "GOARCH=amd64" ;;
	*) die "unsupported architecture $1" ;;
	esac
}
