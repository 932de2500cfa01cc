#!/bin/bash
# Build picockpit-client .deb packages (armhf with GOARM=6, arm64, amd64) from
# the pure-Go binary, with dpkg-deb --build --root-owner-group from a staged
# tree. debian/control, debian/changelog and debian/copyright are the sources.
#
# Environment:
#   VERSION       upstream version (default: from debian/changelog; another
#                 version gets an automatic changelog entry)
#   COMMIT        commit shown by `picockpit-client version` (default: git)
#   DEB_REVISION  Debian revision when VERSION is given (default 1)
#   ARCHES        Debian architectures (default "armhf arm64 amd64")
#   OUT_DIR       output directory (default dist)
#   ETC_SRC       configuration tree to ship (default etc/picockpit-client)
#   ALLOW_UNLISTED_MODULES=1  build even if a linked Go module is missing
#                 from debian/copyright (only for experiments)
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
. debian/lib.sh

ARCHES=${ARCHES:-"armhf arm64 amd64"}
OUT_DIR=${OUT_DIR:-dist}
ETC_SRC=${ETC_SRC:-etc/picockpit-client}

ensure_tools dpkg-deb:dpkg dpkg-gencontrol:dpkg-dev gzip:gzip
command -v go >/dev/null || die "go not found in PATH (Go 1.26, see go.mod)"
compute_versions
[ -d "$ETC_SRC" ] || die "configuration tree $ETC_SRC not found"

# Timestamps: the changelog entry's date. A build of another version gets
# an automatic entry that must be newer than the changelog's top entry
# (lintian: latest-changelog-entry-without-new-date): the commit's date when
# that is later, else one second after the top entry.
cl_epoch=$(date -d "$(changelog_field Date)" +%s)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$cl_epoch
	if [ "$DEB_VERSION" != "$(changelog_field Version)" ]; then
		SOURCE_DATE_EPOCH=$(git -c safe.directory='*' log -1 --format=%ct 2>/dev/null || true)
		[ -n "$SOURCE_DATE_EPOCH" ] && [ "$SOURCE_DATE_EPOCH" -gt "$cl_epoch" ] || SOURCE_DATE_EPOCH=$((cl_epoch + 1))
	fi
fi
export SOURCE_DATE_EPOCH
COMMIT=${COMMIT-$(source_commit)}
umask 022

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT_DIR"

# The changelog shipped in the package: debian/changelog, with an automatic
# entry on top when VERSION asks for a version it does not have yet.
changelog="$work/changelog"
if [ "$DEB_VERSION" != "$(changelog_field Version)" ]; then
	{
		printf '%s (%s) %s; urgency=medium\n\n' "$PKG" "$DEB_VERSION" "$(changelog_field Distribution)"
		printf '  * Automated build of upstream version %s.\n\n' "$UPSTREAM_VERSION"
		printf ' -- %s  %s\n\n' "$(changelog_field Maintainer)" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
		cat debian/changelog
	} >"$changelog"
else
	cp debian/changelog "$changelog"
fi

# Every Go module linked into the binary must be covered by debian/copyright:
# a module is covered by a Files: entry equal to it or to a parent path.
copyright_files=$(awk '
	/^Files:/ { infiles = 1; sub(/^Files:/, ""); print; next }
	/^[^ \t]/ { infiles = 0 }
	infiles && /^[ \t]/ { print }
' debian/copyright | tr -s ' \t' '\n\n' | grep -v '^$' || true)
check_copyright() {
	local bin=$1 missing="" kind mod rest ok f
	while read -r kind mod rest; do
		[ "$kind" = dep ] || continue
		ok=""
		for f in $copyright_files; do
			case "$mod" in "$f" | "$f"/*) ok=1 && break ;; esac
		done
		[ -n "$ok" ] || missing="$missing $mod"
	done < <(go version -m "$bin" | sed 1d)
	if [ -n "$missing" ]; then
		if [ "${ALLOW_UNLISTED_MODULES:-}" = 1 ]; then
			log "WARNING: debian/copyright does not list:$missing"
		else
			die "debian/copyright does not list these linked Go modules:$missing (add a Files: paragraph with their copyright and license)"
		fi
	fi
}

for arch in $ARCHES; do
	t0=$(date +%s.%N)
	stage="$work/$arch/root"
	mkdir -p "$stage/DEBIAN"

	# 1. the binary
	bin="$stage/usr/bin/$PKG"
	mkdir -p "$(dirname "$bin")"
	# shellcheck disable=SC2046 # GOARCH/GOARM words on purpose
	env CGO_ENABLED=0 GOOS=linux $(go_env_for "$arch") \
		go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.versionOverride=$UPSTREAM_VERSION -X main.commitOverride=$COMMIT" \
		-o "$bin" ./cmd/picockpit-client
	chmod 0755 "$bin"
	check_copyright "$bin"

	# 2. the systemd unit, where bookworm's debhelper puts it
	install -D -m 0644 systemd/$PKG.service "$stage/lib/systemd/system/$PKG.service"

	# 3. configuration: everything under etc/picockpit-client, all conffiles.
	#    The main config can hold broker credentials: root only.
	: >"$work/$arch/conffiles"
	while IFS= read -r -d '' f; do
		rel=${f#"$ETC_SRC"/}
		mode=0644
		[ "$rel" = "$PKG.config.json" ] && mode=0600
		install -D -m "$mode" "$f" "$stage/etc/$PKG/$rel"
		echo "/etc/$PKG/$rel" >>"$work/$arch/conffiles"
	done < <(find "$ETC_SRC" -type f ! -name '*~' ! -name '.*' -print0 | sort -z)
	if [ -s "$work/$arch/conffiles" ]; then
		install -m 0644 "$work/$arch/conffiles" "$stage/DEBIAN/conffiles"
	else
		log "WARNING: $ETC_SRC has no files: the package ships no configuration"
		mkdir -p "$stage/etc/$PKG"
	fi
	# Directories that exist in the tree (even empty ones) are shipped too.
	while IFS= read -r -d '' d; do
		install -d -m 0755 "$stage/etc/$PKG/${d#"$ETC_SRC"}"
	done < <(find "$ETC_SRC" -type d -print0)

	# 4. documentation
	doc="$stage/usr/share/doc/$PKG"
	install -D -m 0644 debian/copyright "$doc/copyright"
	gzip -9n <"$changelog" >"$doc/changelog.Debian.gz"
	chmod 0644 "$doc/changelog.Debian.gz"
	install -d -m 0755 "$stage/usr/share/man/man8"
	gzip -9n <debian/$PKG.8 >"$stage/usr/share/man/man8/$PKG.8.gz"
	chmod 0644 "$stage/usr/share/man/man8/$PKG.8.gz"
	if [ -f debian/$PKG.lintian-overrides ]; then
		install -D -m 0644 debian/$PKG.lintian-overrides "$stage/usr/share/lintian/overrides/$PKG"
	fi

	# 5. maintainer scripts and md5sums (conffiles are tracked by dpkg
	#    separately and left out, as dh_md5sums does)
	for s in postinst prerm postrm; do
		install -m 0755 "debian/$s" "$stage/DEBIAN/$s"
	done
	(
		cd "$stage"
		find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' |
			sort -z | xargs -0r md5sum
	) >"$stage/DEBIAN/md5sums"
	chmod 0644 "$stage/DEBIAN/md5sums"

	# 6. DEBIAN/control from debian/control + changelog (Installed-Size,
	#    Version and Architecture filled in by dpkg-gencontrol)
	gc="$work/$arch/gencontrol"
	mkdir -p "$gc/debian"
	cp debian/control "$gc/debian/control"
	cp "$changelog" "$gc/debian/changelog"
	(cd "$gc" && DEB_HOST_ARCH=$arch dpkg-gencontrol -p"$PKG" -P"$stage" \
		-v"$DEB_VERSION" -f"$gc/files" -T"$gc/substvars" 2>"$gc/warnings") ||
		{ cat "$gc/warnings" >&2; die "dpkg-gencontrol failed for $arch"; }
	grep -v '^$' "$gc/warnings" >&2 || true
	chmod 0644 "$stage/DEBIAN/control"

	# 7. reproducible timestamps, then the package
	find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	deb="$OUT_DIR/${PKG}_${DEB_VERSION}_${arch}.deb"
	dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
	t1=$(date +%s.%N)
	log "built $deb ($(stat -c %s "$deb") bytes, binary $(stat -c %s "$bin") bytes, $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s)"
done
