#!/bin/bash
# Acceptance test for the picockpit-client packages and apt repository.
#
#  1. builds the .debs (version N for armhf, arm64, amd64; N+1 for the host
#     architecture) with debian/build-deb.sh into a work directory;
#  2. inspects them: dpkg-deb --info/--contents, conffiles, lintian, `file`
#     (ARM really ARM, every binary static), GOARM=6, sizes;
#  3. builds signed repositories with debian/build-repo.sh: the good one
#     (test key A), one signed by another key, one with a tampered Packages
#     file, one with a tampered Release/InRelease;
#  4. debootstraps a minimal Debian 12 (bookworm, minbase) from the mirror in
#     this machine's apt sources (cached as a tarball), and in that chroot:
#     apt refuses the three bad repositories; installs from the good one
#     (signature verified via Signed-By) and checks binary, unit, conffiles,
#     state directory, enable symlink; upgrades N -> N+1 keeping the user's
#     conffile edits; removes and purges.
#
# Needs root. Prints PASS/FAIL per check and ends with "test-deb: N passed,
# M failed"; exits non-zero on any failure.
#
# Environment: VERSION (version N, default from debian/changelog),
# ETC_SRC (configuration tree, default etc/picockpit-client),
# KEEP_WORK=1 (keep the work directory), CACHE_MAX_AGE_DAYS (default 30).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. debian/lib.sh

SUITE_DEBIAN=bookworm
# minbase plus what the package depends on beyond it (procps) and what the
# boot test needs (systemd as init, D-Bus, a local broker and its client).
# Nothing of this runs during the chroot test: it looks like an image build.
INCLUDE=procps,systemd-sysv,dbus,mosquitto,mosquitto-clients
CACHE_DIR=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/$PKG
ETC_SRC=${ETC_SRC:-etc/picockpit-client}
export ETC_SRC

[ "$(id -u)" = 0 ] || die "test-deb must run as root (debootstrap, chroot)"

T_START=$(date +%s)
declare -a TIMINGS=()
phase_start=$T_START
phase_name=""
phase() {
	local now
	now=$(date +%s)
	[ -n "$phase_name" ] && TIMINGS+=("$(printf '%-28s %4d s' "$phase_name" $((now - phase_start)))")
	phase_name=$1
	phase_start=$now
	[ -n "$1" ] && printf '\n=== %s\n' "$1"
}

PASSED=0
FAILED=0
declare -a FAILURES=()
pass() {
	PASSED=$((PASSED + 1))
	printf 'PASS: %s\n' "$1"
}
fail() {
	FAILED=$((FAILED + 1))
	FAILURES+=("$1")
	printf 'FAIL: %s%s\n' "$1" "${2:+ -- $2}"
}
SKIPPED=0
skip() {
	SKIPPED=$((SKIPPED + 1))
	printf 'SKIP: %s\n' "$1"
}
# check NAME CMD...: PASS when CMD succeeds.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

WORK=$(mktemp -d /var/tmp/$PKG-test-deb.XXXXXX)
ROOT=$WORK/chroot
NSPAWN_PID=""
CT_INIT=""
cleanup() {
	# killing the container's PID 1 ends its whole PID namespace
	if [ -n "$CT_INIT" ] && kill -0 "$CT_INIT" 2>/dev/null; then kill -KILL "$CT_INIT" 2>/dev/null || true; fi
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -KILL "$NSPAWN_PID" 2>/dev/null || true
		sleep 1
	fi
	if mountpoint -q "$ROOT/proc" 2>/dev/null; then umount -l "$ROOT/proc" || true; fi
	if [ "${KEEP_WORK:-}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- tools
phase "tools"
ensure_tools debootstrap:debootstrap dpkg-gencontrol:dpkg-dev lintian:lintian \
	gpg:gnupg apt-ftparchive:apt-utils file:file xz:xz-utils
# QEMU user emulation runs the ARM binaries (optional: SKIP without it)
( ensure_tools qemu-arm-static:qemu-user-static ) || echo "note: qemu-user-static not installed"
compute_versions
HOST_ARCH=$(dpkg --print-architecture)
N_UP=$UPSTREAM_VERSION
N_DEB=$DEB_VERSION
N1_UP="${N_UP#v}+upgradetest"
N1_DEB="$(printf '%s' "$N1_UP" | tr -- '-_' '++')-1"
N2_UP="${N_UP#v}+upgradetest2"
N2_DEB="$(printf '%s' "$N2_UP" | tr -- '-_' '++')-1"
dpkg --compare-versions "$N1_DEB" gt "$N_DEB" || die "N+1 ($N1_DEB) is not newer than N ($N_DEB)"
echo "version N=$N_DEB (binary $N_UP), N+1=$N1_DEB; host architecture $HOST_ARCH"

# ---------------------------------------------------------------- build
phase "build .debs (N, 3 arches)"
# N is built the way the README says: make deb (VERSION, when set, reaches
# make through the environment).
if ! OUT_DIR=$WORK/n make -s deb; then
	fail "make deb (version N)"
	phase ""
	printf 'test-deb: %d passed, %d failed\n' "$PASSED" "$FAILED"
	exit 1
fi
pass "make deb builds armhf, arm64, amd64"

# N+1 ships the same configuration, except that every conffile but the
# first ("A": the main config when there is one) changed upstream.
mapfile -t CONFFILES < <(dpkg-deb -I "$WORK/n/${PKG}_${N_DEB}_${HOST_ARCH}.deb" conffiles 2>/dev/null)
A="" B="" C=""
for f in "${CONFFILES[@]}"; do
	[ "$f" = "/etc/$PKG/$PKG.config.json" ] && A=$f
done
for f in "${CONFFILES[@]}"; do
	[ "$f" = "$A" ] && continue
	if [ -z "$A" ]; then A=$f; elif [ -z "$B" ]; then B=$f; elif [ -z "$C" ]; then C=$f; fi
done
echo "conffiles: ${#CONFFILES[@]}; A (user edits, upstream same)=${A:-none}; B (both change)=${B:-none}; C (upstream changes)=${C:-none}"
rm -rf "$WORK/etc-n1"
cp -a "$ETC_SRC" "$WORK/etc-n1"
for f in "${CONFFILES[@]}"; do
	[ "$f" = "$A" ] && continue
	printf ' \n' >>"$WORK/etc-n1/${f#/etc/$PKG/}"
done
phase "build .debs (N+1, N+2, $HOST_ARCH)"
if OUT_DIR=$WORK/n1 VERSION=$N1_UP ARCHES=$HOST_ARCH ETC_SRC=$WORK/etc-n1 debian/build-deb.sh; then
	pass "build-deb.sh builds N+1 ($N1_DEB)"
	# N+1 carries an automatic changelog entry: it must be newer than the
	# entry below it (lintian: latest-changelog-entry-without-new-date).
	lint=$(lintian --fail-on error,warning "$WORK/n1/${PKG}_${N1_DEB}_${HOST_ARCH}.deb" 2>&1) &&
		pass "N+1 (automatic changelog entry): lintian clean" ||
		fail "N+1: lintian" "$(grep '^[EW]:' <<<"$lint")"
else
	fail "build-deb.sh (version N+1)"
fi

# N+2, same configuration as N+1: the boot test upgrades to it with the
# PiControl update command.
if [ "${BOOT_TEST:-1}" = 1 ]; then
	OUT_DIR=$WORK/n2 VERSION=$N2_UP ARCHES=$HOST_ARCH ETC_SRC=$WORK/etc-n1 debian/build-deb.sh ||
		fail "build-deb.sh (version N+2)"
fi

# ---------------------------------------------------------------- inspect
phase "inspect .debs + lintian"
declare -a SIZES=()
for arch in armhf arm64 amd64; do
	deb=$WORK/n/${PKG}_${N_DEB}_${arch}.deb
	[ -f "$deb" ] || {
		fail "$arch: $deb exists"
		continue
	}
	SIZES+=("$(printf '%-40s %9d bytes' "$(basename "$deb")" "$(stat -c %s "$deb")")")
	info=$(dpkg-deb --info "$deb") && pass "$arch: dpkg-deb --info" || fail "$arch: dpkg-deb --info"
	for field in "Package: $PKG" "Version: $N_DEB" "Architecture: $arch" "Section: admin" \
		"Priority: optional" "Homepage: " "Maintainer: " "Depends: init-system-helpers" "Installed-Size: " \
		"Description: "; do
		grep -q "^ $field" <<<"$info" || fail "$arch: control has '$field'"
	done
	pass "$arch: control fields (Package, Version, Architecture, Section, Priority, Homepage, Depends, Description)"

	contents=$(dpkg-deb --contents "$deb")
	bad_owner=$(awk '$2 != "root/root"' <<<"$contents")
	[ -z "$bad_owner" ] && pass "$arch: every file owned by root/root" || fail "$arch: owners" "$bad_owner"
	want=(
		"-rwxr-xr-x ./usr/bin/$PKG"
		"-rw-r--r-- ./lib/systemd/system/$PKG.service"
		"-rw-r--r-- ./usr/share/doc/$PKG/copyright"
		"-rw-r--r-- ./usr/share/doc/$PKG/changelog.Debian.gz"
		"-rw-r--r-- ./usr/share/man/man8/$PKG.8.gz"
		"drwxr-xr-x ./etc/$PKG/"
	)
	for w in "${want[@]}"; do
		mode=${w%% *}
		path=${w#* }
		awk -v m="$mode" -v p="$path" '$1 == m && $6 == p { found = 1 } END { exit !found }' <<<"$contents" ||
			fail "$arch: contents has $path with mode $mode"
	done
	pass "$arch: contents (binary 0755, unit in /lib/systemd/system, doc, man page, /etc/$PKG)"

	# conffiles == every file under /etc in the package
	shipped_etc=$(awk '$6 ~ "^./etc/" && $1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' <<<"$contents" | sort)
	listed=$(dpkg-deb -I "$deb" conffiles 2>/dev/null | sort)
	if [ -n "$listed" ] && [ "$shipped_etc" = "$listed" ]; then
		pass "$arch: conffiles lists every file under /etc/$PKG ($(wc -l <<<"$listed"))"
	else
		fail "$arch: conffiles == files under /etc" "shipped: $shipped_etc; listed: $listed"
	fi
	if grep -q "/etc/$PKG/$PKG.config.json" <<<"$listed"; then
		awk -v p="./etc/$PKG/$PKG.config.json" '$6 == p && $1 == "-rw-------"' <<<"$contents" | grep -q . &&
			pass "$arch: main config is 0600" || fail "$arch: main config is 0600"
	fi

	lint=$(lintian --fail-on error,warning --display-info "$deb" 2>&1)
	lrc=$?
	lint=$(grep -v 'running with root privileges' <<<"$lint")
	[ -n "$lint" ] && sed 's/^/    lintian: /' <<<"$lint"
	if [ $lrc = 0 ] && ! grep -q '^[EW]:' <<<"$lint"; then
		pass "$arch: lintian clean (no errors, no warnings)"
	else
		fail "$arch: lintian" "exit $lrc"
	fi

	x=$WORK/x-$arch
	dpkg-deb -x "$deb" "$x"
	ft=$(file -b "$x/usr/bin/$PKG")
	echo "    file: $ft"
	case $arch in
	armhf) expect="ELF 32-bit LSB executable, ARM, EABI5" ;;
	arm64) expect="ELF 64-bit LSB executable, ARM aarch64" ;;
	amd64) expect="ELF 64-bit LSB executable, x86-64" ;;
	esac
	[[ $ft == "$expect"* ]] && pass "$arch: binary is $expect" || fail "$arch: binary is $expect" "$ft"
	[[ $ft == *"statically linked"* ]] && pass "$arch: binary statically linked" || fail "$arch: statically linked" "$ft"
	[[ $ft == *", stripped"* ]] && pass "$arch: binary stripped (-s -w)" || fail "$arch: stripped" "$ft"
	bi=$(go version -m "$x/usr/bin/$PKG" 2>/dev/null)
	grep -q $'\tCGO_ENABLED=0' <<<"$bi" && pass "$arch: built with CGO_ENABLED=0" || fail "$arch: CGO_ENABLED=0"
	if [ "$arch" = armhf ]; then
		grep -q $'\tGOARM=6' <<<"$bi" && pass "armhf: built for ARMv6 (GOARM=6: Pi Zero/1)" || fail "armhf: GOARM=6"
	fi
	# Run it: natively, or under QEMU user emulation on the oldest CPU the
	# package is for (ARM1176 = Pi Zero/1, ARMv6; Cortex-A53 = Pi 3/Zero 2).
	# A GOARM=7 binary dies there with SIGILL.
	runner=()
	case "$arch" in
	"$HOST_ARCH") runner=() ;;
	armhf) runner=(qemu-arm-static -cpu arm1176) ;;
	arm64) runner=(qemu-aarch64-static -cpu cortex-a53) ;;
	esac
	if [ "$arch" != "$HOST_ARCH" ] && ! command -v "${runner[0]}" >/dev/null; then
		skip "$arch: run the binary (${runner[0]} not available)"
	else
		out=$("${runner[@]}" "$x/usr/bin/$PKG" version 2>&1)
		[[ $out == *"$N_UP"* ]] && pass "$arch: runs${runner:+ under ${runner[*]}}: '$out'" ||
			fail "$arch: runs${runner:+ under ${runner[*]}}" "$out"
	fi
done

# ---------------------------------------------------------------- repos
phase "signed repositories"
export GNUPGHOME_A=$WORK/gpg-a
install -d -m 0700 "$GNUPGHOME_A"
GNUPGHOME=$GNUPGHOME_A gpg --batch --quiet --no-tty --passphrase '' --quick-generate-key \
	"picockpit-client test-deb key A <picockpit-client@picockpit.com>" ed25519 sign never 2>/dev/null
KEY_A=$(GNUPGHOME=$GNUPGHOME_A gpg --batch --quiet --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')
repo() { # repo OUTDIR DEBDIR [key A?]
	if [ "${3:-}" = A ]; then
		GNUPGHOME=$GNUPGHOME_A SIGNING_KEY_ID=$KEY_A DEB_DIR=$2 REPO_DIR=$1 debian/build-repo.sh
	else
		env -u GNUPGHOME -u SIGNING_KEY_ID DEB_DIR=$2 REPO_DIR=$1 debian/build-repo.sh
	fi
}
repo "$WORK/repo-n" "$WORK/n" A && pass "build-repo.sh with a given key (SIGNING_KEY_ID + GNUPGHOME)" || fail "build-repo.sh (key A)"
repo "$WORK/repo-n1" "$WORK/n1" A || fail "build-repo.sh (N+1, key A)"
if [ "${BOOT_TEST:-1}" = 1 ]; then
	repo "$WORK/repo-n2" "$WORK/n2" A || fail "build-repo.sh (N+2, key A)"
fi
repo "$WORK/repo-otherkey" "$WORK/n" && pass "build-repo.sh with a throwaway key" || fail "build-repo.sh (throwaway key)"
for a in armhf arm64 amd64; do
	grep -q "^Package: $PKG" "$WORK/repo-n/dists/stable/main/binary-$a/Packages" 2>/dev/null ||
		fail "repository has a $a Packages entry"
done
grep -q '^Architectures: amd64 arm64 armhf$' "$WORK/repo-n/dists/stable/Release" &&
	pass "repository Release lists amd64 arm64 armhf" || fail "Release Architectures"
head -1 "$WORK/repo-n/$PKG-archive-keyring.asc" | grep -q 'BEGIN PGP PUBLIC KEY BLOCK' &&
	pass "armored public key $PKG-archive-keyring.asc" || fail "armored public key"

# Tampered Packages: an attacker raises the version (and recompresses); the
# signed Release still carries the old hashes.
cp -a "$WORK/repo-n" "$WORK/repo-tampered-packages"
for pk in "$WORK"/repo-tampered-packages/dists/stable/main/binary-*/Packages; do
	sed -i "s/^Version: .*/Version: 99.0-1/" "$pk"
	gzip -9n <"$pk" >"$pk.gz"
	xz -9 <"$pk" >"$pk.xz"
done
# Tampered Release: the same, plus Release/InRelease rewritten with the new
# hashes, keeping the old signatures (the attacker cannot re-sign).
cp -a "$WORK/repo-tampered-packages" "$WORK/repo-tampered-release"
(
	cd "$WORK/repo-tampered-release/dists/stable" &&
		apt-ftparchive -o APT::FTPArchive::Release::Suite=stable -o APT::FTPArchive::Release::Codename=stable \
			-o "APT::FTPArchive::Release::Architectures=amd64 arm64 armhf" \
			-o APT::FTPArchive::Release::Components=main release . >"$WORK/Release.new" &&
		grep -v '^ .* \(In\)\?Release\(\.gpg\)\?$' "$WORK/Release.new" >Release &&
		awk -v body=Release '
			/^-----BEGIN PGP SIGNATURE-----/ { sig = 1 }
			sig { print; next }
			hdr < 2 { print; if ($0 == "") hdr = 2; else if (/^Hash:/) hdr = 1; next }
			!done { while ((getline l < body) > 0) print l; done = 1 }
		' InRelease >InRelease.new && mv InRelease.new InRelease
) || fail "prepare tampered Release"
grep -q "^Version: 99.0-1" "$WORK/repo-tampered-release/dists/stable/main/binary-amd64/Packages" &&
	! cmp -s "$WORK/repo-n/dists/stable/InRelease" "$WORK/repo-tampered-release/dists/stable/InRelease" ||
	fail "tampered repositories differ from the good one"

# ---------------------------------------------------------------- chroot
phase "debootstrap $SUITE_DEBIAN minbase"
# The Debian mirror comes from this machine's apt sources.
find_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v want="$SUITE_DEBIAN" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && (" " suites " ") ~ (" " want " ")) {
					n = split(uris, u, " ")
					for (i = 1; i <= n; i++) if (u[i] ~ /^(https?|file):/) { print u[i], signed; exit }
				}
				types = uris = suites = enabled = signed = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[A-Za-z-]+:/ {
				key = tolower(substr($0, 1, index($0, ":") - 1))
				val = substr($0, index($0, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = val
				else if (key == "signed-by" && val ~ /^\//) signed = val
			}
			END { flush() }
		' "$f" | head -n1
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v want="$SUITE_DEBIAN" '
			$1 != "deb" { next }
			{
				i = 2; signed = ""
				if ($2 ~ /^\[/) {
					while (i <= NF) {
						if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
						if ($i ~ /\]$/) { i++; break }
						i++
					}
				}
				if ($(i + 1) == want && $i ~ /^(https?|file):/) { print $i, signed; exit }
			}
		' "$f" | head -n1
	done
}
read -r MIRROR MIRROR_KEYRING < <(find_mirror | head -n1) || true
[ -n "${MIRROR:-}" ] || die "no '$SUITE_DEBIAN' deb source in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
[ -n "${MIRROR_KEYRING:-}" ] || MIRROR_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
echo "mirror (from this machine's apt sources): $MIRROR; keyring $MIRROR_KEYRING"

key=$(printf '%s|%s|minbase|%s|%s' "$MIRROR" "$SUITE_DEBIAN" "$HOST_ARCH" "$INCLUDE" | sha256sum | cut -c1-12)
TARBALL=$CACHE_DIR/debootstrap-$SUITE_DEBIAN-minbase-$HOST_ARCH-$key.tar.gz
mkdir -p "$CACHE_DIR" "$ROOT"
if [ -f "$TARBALL" ] && [ -n "$(find "$TARBALL" -mtime -"${CACHE_MAX_AGE_DAYS:-30}")" ]; then
	echo "using cached chroot $TARBALL"
	tar -C "$ROOT" --numeric-owner -xpzf "$TARBALL" || die "cannot unpack $TARBALL"
else
	ks=()
	[ -f "$MIRROR_KEYRING" ] && ks=(--keyring="$MIRROR_KEYRING")
	if ! debootstrap --variant=minbase --include="$INCLUDE" --arch="$HOST_ARCH" "${ks[@]}" "$SUITE_DEBIAN" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
		tail -30 "$WORK/debootstrap.log"
		die "debootstrap failed"
	fi
	chroot "$ROOT" apt-get clean
	tar -C "$ROOT" --numeric-owner -czf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
	# drop images made for another mirror or package list
	find "$CACHE_DIR" -maxdepth 1 -name "debootstrap-$SUITE_DEBIAN-minbase-$HOST_ARCH-*.tar.gz" ! -path "$TARBALL" -delete
	echo "cached chroot as $TARBALL ($(stat -c %s "$TARBALL") bytes)"
fi
pass "Debian $SUITE_DEBIAN minbase chroot ready (+ $INCLUDE)"

# Only our repository inside the chroot: no network needed, nothing else moves.
rm -f "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/*
mount -t proc proc "$ROOT/proc" 2>/dev/null || echo "note: could not mount /proc in the chroot"
[ ! -e "$ROOT/run/systemd/system" ] || die "the chroot must not look like a running systemd"
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
REPO_IN=/srv/$PKG-repo
use_repo() { # copy a repository into the chroot, drop cached lists of ours
	rm -rf "${ROOT:?}$REPO_IN"
	mkdir -p "$ROOT/srv"
	cp -a "$1" "$ROOT$REPO_IN"
	rm -f "$ROOT"/var/lib/apt/lists/_srv_"$PKG"-repo_* "$ROOT"/var/lib/apt/lists/partial/_srv_"$PKG"-repo_*
}
install -D -m 0644 "$WORK/repo-n/$PKG-archive-keyring.asc" "$ROOT/usr/share/keyrings/$PKG-archive-keyring.asc"
cat >"$ROOT/etc/apt/sources.list.d/$PKG.sources" <<EOF
Types: deb
URIs: file:$REPO_IN
Suites: stable
Components: main
Signed-By: /usr/share/keyrings/$PKG-archive-keyring.asc
EOF

phase "apt refuses bad repositories"
refused() { # refused NAME REPO
	use_repo "$2"
	out=$(in_root apt-get update 2>&1)
	rc=$?
	grep -E '^(E|W|Err):' <<<"$out" | sed 's/^/    apt: /' | head -6
	cand=$(in_root apt-cache policy "$PKG" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	if [ $rc != 0 ] && { [ -z "$cand" ] || [ "$cand" = "(none)" ]; }; then
		pass "apt refuses $1 (apt-get update exit $rc, no candidate)"
	else
		fail "apt refuses $1" "apt-get update exit $rc, candidate '$cand'"
	fi
}
refused "a repository signed by another key" "$WORK/repo-otherkey"
refused "a tampered Packages file" "$WORK/repo-tampered-packages"
refused "a tampered Release/InRelease" "$WORK/repo-tampered-release"

phase "install N in the chroot"
use_repo "$WORK/repo-n"
out=$(in_root apt-get update 2>&1)
rc=$?
if [ $rc = 0 ] && ! grep -qE '^(E|W|Err):' <<<"$out"; then
	pass "apt-get update verifies the signature (Signed-By, file: repository)"
else
	fail "apt-get update (good repository)" "exit $rc: $(grep -E '^(E|W|Err):' <<<"$out" | head -3)"
fi
cand=$(in_root apt-cache policy "$PKG" | awk '/Candidate:/ { print $2 }')
[ "$cand" = "$N_DEB" ] && pass "apt candidate is $N_DEB" || fail "apt candidate" "$cand"
if in_root apt-get install -y -q "$PKG" >"$WORK/install.log" 2>&1; then
	pass "apt-get install $PKG"
else
	sed 's/^/    /' "$WORK/install.log" | tail -20
	fail "apt-get install $PKG"
fi

mode_is() { # mode_is PATH OWNER:GROUP MODE
	local got
	got=$(stat -c '%U:%G %a' "$ROOT$1" 2>/dev/null)
	[ "$got" = "$2 $3" ] || {
		echo "    $1: got '$got', want '$2 $3'"
		return 1
	}
}
check "binary /usr/bin/$PKG root:root 0755" mode_is /usr/bin/$PKG root:root 755
out=$(in_root /usr/bin/$PKG version 2>&1)
[[ $out == *"$N_UP"* ]] && pass "installed binary runs: $out" || fail "installed binary runs" "$out"
check "unit /lib/systemd/system/$PKG.service root:root 0644" mode_is /lib/systemd/system/$PKG.service root:root 644
check "installed unit is systemd/$PKG.service" cmp -s "$ROOT/lib/systemd/system/$PKG.service" systemd/$PKG.service
check "config dir /etc/$PKG root:root 0755" mode_is /etc/$PKG root:root 755
check "state dir /var/lib/$PKG root:root 0700" mode_is /var/lib/$PKG root:root 700
inst_conf=$(in_root dpkg-query -W -f='${Conffiles}\n' "$PKG" | awk 'NF { print $1 }' | sort)
[ -n "$inst_conf" ] && [ "$inst_conf" = "$(printf '%s\n' "${CONFFILES[@]}" | sort)" ] &&
	pass "dpkg registered all ${#CONFFILES[@]} conffiles" || fail "dpkg conffiles" "$inst_conf"
conf_ok=1
for f in "${CONFFILES[@]}"; do
	m=644
	[ "$f" = "/etc/$PKG/$PKG.config.json" ] && m=600
	mode_is "$f" root:root $m || conf_ok=""
done
[ -n "$conf_ok" ] && pass "conffiles in place, root:root, config 0600, modules 0644" || fail "conffile modes"
WANTS=/etc/systemd/system/multi-user.target.wants/$PKG.service
[ "$(readlink "$ROOT$WANTS")" = "/lib/systemd/system/$PKG.service" ] &&
	pass "enabled: $WANTS -> /lib/systemd/system/$PKG.service" || fail "enable symlink" "$(readlink "$ROOT$WANTS")"
# (deb-systemd-helper only runs on behalf of a maintainer script)
out=$(in_root systemctl is-enabled "$PKG.service" 2>&1)
[ "$out" = enabled ] && pass "systemctl is-enabled (offline, in the chroot): enabled" || fail "systemctl is-enabled" "$out"
check "deb-systemd-helper is-enabled $PKG.service" in_root DPKG_MAINTSCRIPT_PACKAGE=$PKG deb-systemd-helper --quiet is-enabled "$PKG.service"
v=$(in_root dpkg --verify "$PKG" 2>&1)
[ -z "$v" ] && pass "dpkg --verify $PKG: md5sums match" || fail "dpkg --verify" "$v"

phase "upgrade N -> N+1"
md5() { md5sum <"$ROOT$1" | cut -d' ' -f1; }
declare -A EDITED=()
for f in "$A" "$B"; do
	[ -n "$f" ] || continue
	printf '\t\n' >>"$ROOT$f" # a user edit (JSON stays valid)
	EDITED[$f]=$(md5 "$f")
done
echo marker >"$ROOT/var/lib/$PKG/test-marker"
use_repo "$WORK/repo-n1"
in_root apt-get update -q >"$WORK/update-n1.log" 2>&1 || fail "apt-get update (N+1)"
# The non-interactive conffile policy the PiControl update command uses.
if in_root apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade \
	>"$WORK/upgrade.log" 2>&1 </dev/null; then
	pass "apt-get upgrade to $N1_DEB"
else
	sed 's/^/    /' "$WORK/upgrade.log" | tail -20
	fail "apt-get upgrade"
fi
got=$(in_root dpkg-query -W -f='${Version}' "$PKG")
[ "$got" = "$N1_DEB" ] && pass "installed version is $N1_DEB" || fail "version after upgrade" "$got"
out=$(in_root /usr/bin/$PKG version 2>&1)
[[ $out == *"$N1_UP"* ]] && pass "upgraded binary runs: $out" || fail "upgraded binary" "$out"
if [ -n "$A" ]; then
	[ "$(md5 "$A")" = "${EDITED[$A]}" ] && [ ! -e "$ROOT$A.dpkg-dist" ] &&
		! grep -q "Configuration file '$A'" "$WORK/upgrade.log" &&
		pass "user's edit of $A survives the upgrade (upstream unchanged: no prompt)" || fail "edit of $A survives"
else
	fail "a conffile to edit" "the package ships none"
fi
if [ -n "$B" ]; then
	[ "$(md5 "$B")" = "${EDITED[$B]}" ] && [ -f "$ROOT$B.dpkg-dist" ] &&
		cmp -s "$ROOT$B.dpkg-dist" "$WORK/etc-n1/${B#/etc/$PKG/}" &&
		pass "both changed $B: user's version kept, new one in .dpkg-dist" || fail "both-changed conffile $B"
else
	echo "note: only one conffile shipped: the both-changed case is not exercised"
fi
if [ -n "$C" ]; then
	cmp -s "$ROOT$C" "$WORK/etc-n1/${C#/etc/$PKG/}" &&
		pass "unedited $C follows the upstream change" || fail "unedited conffile $C updated"
fi
check "state survives the upgrade" test -f "$ROOT/var/lib/$PKG/test-marker"
check "still enabled after the upgrade" test -L "$ROOT$WANTS"
check "main config still 0600" mode_is "/etc/$PKG/$PKG.config.json" root:root 600

phase "remove, purge"
mkdir -p "$ROOT/etc/$PKG/apps/local.user/extra/modules"
echo '{}' >"$ROOT/etc/$PKG/apps/local.user/extra/modules/user.json"
if in_root apt-get -y -q remove "$PKG" >"$WORK/remove.log" 2>&1; then pass "apt-get remove"; else fail "apt-get remove"; fi
check "remove: binary gone" test ! -e "$ROOT/usr/bin/$PKG"
check "remove: unit gone" test ! -e "$ROOT/lib/systemd/system/$PKG.service"
check "remove: config kept" test -f "$ROOT${A:-/nonexistent}"
check "remove: state kept" test -f "$ROOT/var/lib/$PKG/test-marker"
st=$(in_root dpkg-query -W -f='${db:Status-Abbrev}' "$PKG" 2>/dev/null)
[ "${st% }" = "rc" ] && pass "remove: dpkg status rc (config-files)" || fail "remove: status" "$st"
if in_root apt-get -y -q purge "$PKG" >"$WORK/purge.log" 2>&1; then pass "apt-get purge"; else fail "apt-get purge"; fi
check "purge: /etc/$PKG removed (with user-added files)" test ! -e "$ROOT/etc/$PKG"
check "purge: /var/lib/$PKG removed" test ! -e "$ROOT/var/lib/$PKG"
check "purge: enable symlink removed" test ! -e "$ROOT$WANTS" -a ! -L "$ROOT$WANTS"
check "purge: no mask left" test ! -L "$ROOT/etc/systemd/system/$PKG.service"
check "purge: dpkg forgot the package" bash -c "! chroot '$ROOT' dpkg-query -W '$PKG' >/dev/null 2>&1"

phase "boot: real systemd (nspawn)"
# The same tree, booted with systemd as PID 1 in a container: postinst's
# running-system branch (start, restart, stop), Type=notify, the watchdog,
# reload, and the sandbox as systemd 252 really applies it.
# picontrol_updates: updates as a user triggers them over MQTT, in the booted
# container (uses in_ct and the container's mosquitto).
picontrol_updates() {
	local dev cat main main2 st res
	dev=$(in_ct timeout 10 mosquitto_sub -h 127.0.0.1 -t 'picockpit/+/status' -C 1 -W 8 -v 2>/dev/null |
		awk '{ n = split($1, a, "/"); print a[n - 1] }')
	cat=$(in_ct timeout 10 mosquitto_sub -h 127.0.0.1 -t "picockpit/$dev/picontrol/commands" -C 1 -W 8 2>/dev/null)
	if [ -z "$dev" ] || [[ $cat != *'"update-picockpit-client"'* ]]; then
		skip "boot: PiControl updates (no update-picockpit-client in the catalogue of device '$dev')"
		return
	fi
	# wait_upgraded VERSION OLDPID: the package is configured at VERSION and
	# the service runs again under a new PID.
	wait_upgraded() {
		for _ in $(seq 90); do
			st=$(in_ct dpkg-query -W -f='${Status} ${Version}' "$PKG" 2>/dev/null)
			main2=$(in_ct systemctl show -p MainPID --value "$PKG")
			if [ "$st" = "install ok installed $1" ] && [ "$main2" != "$2" ] && [ "$main2" != 0 ] &&
				[ "$(in_ct systemctl is-active "$PKG")" = active ]; then
				return 0
			fi
			sleep 2
		done
		return 1
	}

	# 1. the shipped command (apt in its own transient unit): N+1 -> N+2
	use_repo "$WORK/repo-n2"
	in_ct apt-get update -q >"$WORK/ct-update-n2.log" 2>&1 || fail "boot: apt-get update (N+2)"
	main=$(in_ct systemctl show -p MainPID --value "$PKG")
	in_ct mosquitto_pub -h 127.0.0.1 -q 1 -n -t "picockpit/$dev/picontrol/run/system/update-picockpit-client"
	if wait_upgraded "$N2_DEB" "$main"; then
		pass "boot: PiControl system/update-picockpit-client upgraded to $N2_DEB, service restarted (pid $main -> $main2)"
	else
		in_ct journalctl -u picockpit-client-update --no-pager -n 10 2>&1 | sed 's/^/    update unit: /'
		ct_journal
		fail "boot: PiControl update command" "status '$st', pid $main -> $main2"
	fi

	# 2. a command that runs apt-get directly, inside the service's cgroup:
	#    postinst must not kill its own dpkg run by restarting the service.
	install -D -m 0644 /dev/stdin "$ROOT/etc/$PKG/apps/test.packaging/picontrol/modules/packaging-test.json" <<'JSON'
{
  "id": "packaging-test",
  "name": "Packaging test",
  "commands": [
    {
      "id": "reinstall",
      "name": "Reinstall picockpit-client with apt-get inside the service",
      "argv": ["/usr/bin/apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
               "-o", "Dpkg::Options::=--force-confold", "install", "--reinstall", "picockpit-client"],
      "user": "root",
      "env": {"DEBIAN_FRONTEND": "noninteractive"},
      "timeout": "5m"
    }
  ]
}
JSON
	in_ct systemctl reload "$PKG" || fail "boot: reload with the test module"
	for _ in $(seq 15); do
		cat=$(in_ct timeout 5 mosquitto_sub -h 127.0.0.1 -t "picockpit/$dev/picontrol/commands" -C 1 -W 4 2>/dev/null)
		[[ $cat == *'"packaging-test"'* ]] && break
		sleep 1
	done
	main=$(in_ct systemctl show -p MainPID --value "$PKG")
	in_ct mosquitto_pub -h 127.0.0.1 -q 1 -n -t "picockpit/$dev/picontrol/run/packaging-test/reinstall"
	if wait_upgraded "$N2_DEB" "$main"; then
		res=$(in_ct timeout 10 mosquitto_sub -h 127.0.0.1 -t "picockpit/$dev/picontrol/result/packaging-test/reinstall" -C 1 -W 8 2>/dev/null)
		if [[ $res == *'"status":"done"'* ]] && [[ $res == *'"exit_code":0'* ]] &&
			[[ $res == *"restarting it when command"* ]]; then
			pass "boot: apt-get run inside the service: dpkg finished (exit 0), restart deferred until the command ended (pid $main -> $main2)"
		else
			fail "boot: in-service apt-get result" "${res:0:300}"
		fi
	else
		ct_journal
		fail "boot: in-service apt-get" "status '$st', pid $main -> $main2"
	fi
	rm -rf "$ROOT/etc/$PKG/apps/test.packaging"
}

# boot_connect: connect stores the broker password encrypted with
# systemd-creds and the unit starts with it (LoadCredentialEncrypted=);
# without it the unit's empty SetCredential= fallback applies; disconnect
# clears the retained status and removes the credential (uses in_ct and the
# container's local broker, which accepts any login).
boot_connect() {
	local pw=ct-broker-secret-4711 cred=/etc/$PKG/credentials/broker-password.cred run main main2 out
	run=/run/credentials/$PKG.service/broker-password
	out=$(in_ct cat "$run" 2>&1 | od -An -c | tr -d ' ')
	[ "$out" = '\n' ] && pass "boot: no stored password: the unit started with the empty SetCredential= fallback" ||
		fail "boot: credential fallback" "$out"
	main=$(in_ct systemctl show -p MainPID --value "$PKG")
	if printf '%s\n' "$pw" | in_ct /usr/bin/$PKG connect --broker mqtt://127.0.0.1:1883 --username pi-ct --password-stdin \
		>"$WORK/ct-connect.log" 2>&1; then
		pass "boot: picockpit-client connect (tested the login, saved it, restarted the service)"
	else
		sed 's/^/    /' "$WORK/ct-connect.log"
		fail "boot: picockpit-client connect"
	fi
	if [ -f "$ROOT$cred" ] && mode_is "$cred" root:root 600 && ! grep -qaF "$pw" "$ROOT$cred" &&
		! grep -qaF "$pw" "$ROOT/etc/$PKG/$PKG.config.json" && [ ! -e "$ROOT/etc/$PKG/broker-password" ] &&
		grep -q 'password stored encrypted with systemd-creds' "$WORK/ct-connect.log"; then
		pass "boot: the password is stored only encrypted (systemd-creds), not readable in the file or the config"
	else
		fail "boot: encrypted password at rest"
	fi
	main2=$(in_ct systemctl show -p MainPID --value "$PKG")
	out=$(in_ct cat "$run" 2>&1)
	if [ "$(in_ct systemctl is-active "$PKG")" = active ] && [ "$main2" != "$main" ] && [ "$out" = "$pw" ]; then
		pass "boot: the service started with the decrypted credential (LoadCredentialEncrypted=, pid $main -> $main2)"
	else
		ct_journal
		fail "boot: service with the encrypted credential" "pid $main -> $main2, credential '${out:0:40}'"
	fi
	out=$(in_ct timeout 10 mosquitto_sub -h 127.0.0.1 -t 'picockpit/+/status' -C 1 -W 8 2>&1)
	if [ "$out" = online ] && in_ct /usr/bin/$PKG status >"$WORK/ct-status.log" 2>&1 &&
		grep -q 'connected to mqtt://127.0.0.1:1883' "$WORK/ct-status.log"; then
		pass "boot: picockpit-client status: active and connected"
	else
		sed 's/^/    /' "$WORK/ct-status.log"
		fail "boot: status after connect" "$out"
	fi
	if in_ct /usr/bin/$PKG disconnect >"$WORK/ct-disconnect.log" 2>&1; then
		pass "boot: picockpit-client disconnect"
	else
		sed 's/^/    /' "$WORK/ct-disconnect.log"
		fail "boot: picockpit-client disconnect"
	fi
	out=$(in_ct timeout 6 mosquitto_sub -h 127.0.0.1 -t 'picockpit/#' -W 3 -v 2>/dev/null)
	if [ -z "$out" ] && [ ! -e "$ROOT$cred" ] && [ "$(in_ct systemctl is-enabled "$PKG" 2>&1)" = disabled ] &&
		[ "$(in_ct systemctl is-active "$PKG" 2>&1)" != active ]; then
		pass "boot: after disconnect: no retained message of the device, credential removed, service stopped and disabled"
	else
		fail "boot: after disconnect" "retained: ${out:0:200}"
	fi
}
boot_test() {
	local init="" p state main main2 t1 t2 capbnd out
	if [ "${BOOT_TEST:-1}" != 1 ]; then
		skip "boot test (BOOT_TEST=${BOOT_TEST})"
		return
	fi
	ensure_tools systemd-nspawn:systemd-container nsenter:util-linux
	if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc" || umount -l "$ROOT/proc"; fi
	systemd-nspawn -q --keep-unit --register=no --private-network -D "$ROOT" -b --console=pipe \
		>"$WORK/nspawn.log" 2>&1 </dev/null &
	NSPAWN_PID=$!
	for _ in $(seq 60); do
		# the container's init: nspawn's child that is PID 1 in its namespace
		for p in $(pgrep -P "$NSPAWN_PID"); do
			awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' "/proc/$p/status" 2>/dev/null && init=$p
		done
		[ -n "$init" ] && break
		kill -0 "$NSPAWN_PID" 2>/dev/null || break
		sleep 1
	done
	CT_INIT=$init
	if [ -z "$init" ]; then
		sed 's/^/    nspawn: /' "$WORK/nspawn.log" | tail -5
		skip "boot test: systemd-nspawn could not boot the tree on this machine"
		return
	fi
	in_ct() {
		timeout 120 nsenter -t "$init" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	}
	# systemd's own socket appears a moment after PID 1 starts
	for _ in $(seq 30); do
		state=$(in_ct systemctl is-system-running --wait 2>&1)
		case "$state" in running | degraded) break ;; esac
		sleep 2
	done
	case "$state" in
	running | degraded) pass "container booted with systemd $(in_ct systemctl --version | awk 'NR == 1 { print $2 }') ($state)" ;;
	*)
		skip "boot test: container state '$state'"
		return
		;;
	esac
	ct_journal() { in_ct journalctl -u "$PKG" --no-pager -n 15 2>&1 | sed 's/^/    journal: /'; }

	use_repo "$WORK/repo-n"
	in_ct apt-get update -q >"$WORK/ct-update.log" 2>&1 || fail "boot: apt-get update"
	if in_ct apt-get install -y -q "$PKG" >"$WORK/ct-install.log" 2>&1; then
		pass "boot: apt-get install $PKG on a running system"
	else
		tail -15 "$WORK/ct-install.log" | sed 's/^/    /'
		fail "boot: apt-get install"
	fi
	out=$(in_ct systemctl is-enabled "$PKG" 2>&1)
	[ "$out" = enabled ] && pass "boot: installing enabled the unit" || fail "boot: enabled" "$out"
	out=$(in_ct systemctl is-active "$PKG" 2>&1)
	[ "$out" = active ] && pass "boot: installing started the unit (Type=notify: READY=1 received)" || {
		ct_journal
		fail "boot: active after install" "$out"
	}
	echo "    status: $(in_ct systemctl show -p StatusText --value "$PKG")"
	main=$(in_ct systemctl show -p MainPID --value "$PKG")
	out=$(in_ct timeout 10 mosquitto_sub -h 127.0.0.1 -t 'picockpit/+/status' -C 1 -W 8 2>&1)
	[ "$out" = online ] && pass "boot: the agent is connected: retained status 'online' on the local broker" ||
		fail "boot: retained status online" "$out"

	# the sandbox as applied by systemd
	out=$(in_ct cat "/proc/$main/status" 2>/dev/null)
	capbnd=$(awk '/^CapBnd:/ { print $2 }' <<<"$out")
	if [ -n "$capbnd" ] && grep -q '^Seccomp:[[:space:]]*2' <<<"$out" && grep -q '^NoNewPrivs:[[:space:]]*0' <<<"$out" &&
		[ $((0x$capbnd >> 5 & 1)) = 1 ] && [ $((0x$capbnd >> 6 & 1)) = 1 ] && [ $((0x$capbnd >> 7 & 1)) = 1 ] &&
		[ $((0x$capbnd >> 17 & 1)) = 0 ] && [ $((0x$capbnd >> 19 & 1)) = 0 ] &&
		[ $((0x$capbnd >> 22 & 1)) = 0 ] && [ $((0x$capbnd >> 25 & 1)) = 0 ]; then
		pass "boot: sandbox applied (seccomp filter; CAP_KILL/SETGID/SETUID kept; SYS_RAWIO/PTRACE/BOOT/TIME dropped; NoNewPrivs 0; CapBnd $capbnd)"
	else
		fail "boot: sandbox applied" "$(grep -E '^(CapBnd|Seccomp|NoNewPrivs)' <<<"$out" | tr '\n' ' ')"
	fi
	# the watchdog: the agent pings (every WATCHDOG_USEC/2 = 15 s)
	t1=$(in_ct systemctl show -p WatchdogTimestampMonotonic --value "$PKG")
	t2=$t1
	for _ in $(seq 12); do
		sleep 2
		t2=$(in_ct systemctl show -p WatchdogTimestampMonotonic --value "$PKG")
		[ "$t2" != "$t1" ] && break
	done
	[ -n "$t1" ] && [ "$t2" != "$t1" ] && [ "$(in_ct systemctl show -p MainPID --value "$PKG")" = "$main" ] &&
		pass "boot: watchdog pings arrive (WatchdogSec=30)" || fail "boot: watchdog ping" "$t1 -> $t2"
	if in_ct systemctl reload "$PKG" && [ "$(in_ct systemctl show -p MainPID --value "$PKG")" = "$main" ] &&
		[ "$(in_ct systemctl is-active "$PKG")" = active ]; then
		pass "boot: systemctl reload (SIGHUP via /bin/kill) keeps the process"
	else
		ct_journal
		fail "boot: reload"
	fi

	use_repo "$WORK/repo-n1"
	in_ct apt-get update -q >"$WORK/ct-update-n1.log" 2>&1 || fail "boot: apt-get update (N+1)"
	in_ct apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade \
		>"$WORK/ct-upgrade.log" 2>&1 </dev/null || fail "boot: apt-get upgrade"
	main2=$(in_ct systemctl show -p MainPID --value "$PKG")
	if [ "$(in_ct systemctl is-active "$PKG")" = active ] && [ "$main2" != "$main" ] && [ "$main2" != 0 ] &&
		[[ $(in_ct /usr/bin/$PKG version) == *"$N1_UP"* ]]; then
		pass "boot: upgrade restarted the service (pid $main -> $main2, now $N1_DEB)"
	else
		ct_journal
		fail "boot: restart on upgrade" "pid $main -> $main2"
	fi

	picontrol_updates
	boot_connect

	in_ct apt-get -y -q remove "$PKG" >"$WORK/ct-remove.log" 2>&1 || fail "boot: apt-get remove"
	out=$(in_ct systemctl is-active "$PKG" 2>&1)
	[ "$out" != active ] && ! in_ct pgrep -f "^/usr/bin/$PKG" >/dev/null &&
		pass "boot: remove stopped the service ($out)" || fail "boot: stopped on remove" "$out"
	in_ct apt-get -y -q purge "$PKG" >"$WORK/ct-purge.log" 2>&1 &&
		[ ! -e "$ROOT/etc/$PKG" ] && [ ! -e "$ROOT/var/lib/$PKG" ] &&
		pass "boot: purge" || fail "boot: purge"

	kill -TERM "$NSPAWN_PID" 2>/dev/null
	for _ in $(seq 30); do
		kill -0 "$NSPAWN_PID" 2>/dev/null || break
		sleep 1
	done
	if kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -KILL "$init" "$NSPAWN_PID" 2>/dev/null
	fi
	wait "$NSPAWN_PID" 2>/dev/null
	NSPAWN_PID=""
	CT_INIT=""
}
boot_test

phase "systemd-analyze"
if command -v systemd-analyze >/dev/null; then
	# verify: every directive known to this systemd, with the packaged binary
	# and man page standing in for the installed ones.
	x=$WORK/x-$HOST_ARCH
	sed "s|/usr/bin/$PKG|$x/usr/bin/$PKG|" "systemd/$PKG.service" >"$WORK/$PKG.service"
	v=$(MANPATH=$x/usr/share/man systemd-analyze verify "$WORK/$PKG.service" 2>&1)
	[ -z "$v" ] && pass "systemd-analyze verify: the unit parses cleanly (systemd $(systemctl --version | awk 'NR == 1 { print $2 }'))" ||
		fail "systemd-analyze verify" "$v"
	sa=$(systemd-analyze security --offline=yes "systemd/$PKG.service" 2>&1 | tail -n1)
	echo "    $sa"
	[[ $sa == *"Overall exposure level"* ]] && pass "systemd-analyze security --offline runs" || fail "systemd-analyze security"
else
	echo "note: systemd-analyze not installed; skipped"
fi

phase ""
echo
echo "=== sizes"
printf '  %s\n' "${SIZES[@]}"
echo "=== timings (total $(($(date +%s) - T_START)) s)"
printf '  %s\n' "${TIMINGS[@]}"
if [ "$FAILED" -gt 0 ]; then
	echo "=== failures"
	printf '  %s\n' "${FAILURES[@]}"
fi
printf 'test-deb: %d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
[ "$FAILED" = 0 ]
