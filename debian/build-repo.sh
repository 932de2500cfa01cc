#!/bin/bash
# Build a signed apt repository from the .deb files in DEB_DIR.
#
#   REPO_DIR/
#     pool/main/p/picockpit-client/*.deb
#     dists/SUITE/{InRelease,Release,Release.gpg}
#     dists/SUITE/main/binary-{armhf,arm64,amd64}/Packages{,.gz,.xz}
#     picockpit-client-archive-keyring.asc   (armored public key, for
#                                             /usr/share/keyrings/ + Signed-By)
#     picockpit-client.sources                (example deb822 entry)
#
# Environment:
#   DEB_DIR         where the .deb files are (default dist)
#   REPO_DIR        output (default dist/repo); rebuilt from scratch
#   REPO_SUITE      suite and codename (default stable)
#   REPO_URI        URI written into the example .sources file
#   SIGNING_KEY_ID  key to sign with, from the keyring in GNUPGHOME (the
#                   release key; never committed). Optional
#                   SIGNING_KEY_PASSPHRASE_FILE for a protected key.
#                   Without SIGNING_KEY_ID a throwaway key is generated in a
#                   temporary GNUPGHOME and deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
. debian/lib.sh

DEB_DIR=${DEB_DIR:-dist}
REPO_DIR=${REPO_DIR:-dist/repo}
SUITE=${REPO_SUITE:-stable}
COMPONENT=main
KEYRING_NAME=$PKG-archive-keyring.asc
REPO_URI=${REPO_URI:-"https://REPLACE-WITH-THE-REPOSITORY-URL/picockpit-client"}

ensure_tools apt-ftparchive:apt-utils gpg:gnupg dpkg-deb:dpkg xz:xz-utils gzip:gzip

shopt -s nullglob
debs=("$DEB_DIR"/"$PKG"_*.deb)
[ ${#debs[@]} -gt 0 ] || die "no $DEB_DIR/${PKG}_*.deb: run debian/build-deb.sh first"

tmp=$(mktemp -d)
trap 'gpgconf --homedir "$tmp/gnupg" --kill all >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

gpg_sign=(gpg --batch --quiet --yes --no-tty --pinentry-mode loopback)
if [ -n "${SIGNING_KEY_ID:-}" ]; then
	KEY=$SIGNING_KEY_ID
	if [ -n "${SIGNING_KEY_PASSPHRASE_FILE:-}" ]; then
		gpg_sign+=(--passphrase-file "$SIGNING_KEY_PASSPHRASE_FILE")
	fi
	gpg --batch --list-secret-keys "$KEY" >/dev/null 2>&1 ||
		die "SIGNING_KEY_ID=$KEY: no such secret key in ${GNUPGHOME:-~/.gnupg}"
	log "signing with key $KEY from ${GNUPGHOME:-~/.gnupg}"
else
	export GNUPGHOME="$tmp/gnupg"
	install -d -m 0700 "$GNUPGHOME"
	gpg --batch --quiet --no-tty --passphrase '' --quick-generate-key \
		"picockpit-client throwaway test key (not for production) <picockpit-client@picockpit.com>" \
		ed25519 sign never
	KEY=$(gpg --batch --quiet --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')
	log "WARNING: no SIGNING_KEY_ID given: signed with throwaway key $KEY (private part deleted)"
fi

rm -rf "$REPO_DIR"
pool="$REPO_DIR/pool/$COMPONENT/${PKG:0:1}/$PKG"
install -d -m 0755 "$pool"
install -m 0644 "${debs[@]}" "$pool/"

arches=$(for d in "${debs[@]}"; do dpkg-deb -f "$d" Architecture; done | sort -u | tr '\n' ' ')
arches=${arches% }

(
	cd "$REPO_DIR"
	for arch in $arches; do
		dir="dists/$SUITE/$COMPONENT/binary-$arch"
		install -d -m 0755 "$dir"
		apt-ftparchive --arch "$arch" packages "pool/$COMPONENT" >"$dir/Packages"
		grep -q "^Architecture: $arch\$" "$dir/Packages" || die "no $arch package in the pool"
		gzip -9n <"$dir/Packages" >"$dir/Packages.gz"
		xz -9 <"$dir/Packages" >"$dir/Packages.xz"
	done
	apt-ftparchive \
		-o "APT::FTPArchive::Release::Origin=PiCockpit" \
		-o "APT::FTPArchive::Release::Label=picockpit-client" \
		-o "APT::FTPArchive::Release::Suite=$SUITE" \
		-o "APT::FTPArchive::Release::Codename=$SUITE" \
		-o "APT::FTPArchive::Release::Architectures=$arches" \
		-o "APT::FTPArchive::Release::Components=$COMPONENT" \
		-o "APT::FTPArchive::Release::Description=picockpit-client packages (static binaries for any Debian or Raspberry Pi OS release)" \
		release "dists/$SUITE" >"$tmp/Release"
	mv "$tmp/Release" "dists/$SUITE/Release"
	"${gpg_sign[@]}" --local-user "$KEY" --digest-algo SHA512 \
		--clearsign -o "dists/$SUITE/InRelease" "dists/$SUITE/Release"
	"${gpg_sign[@]}" --local-user "$KEY" --digest-algo SHA512 \
		--armor --detach-sign -o "dists/$SUITE/Release.gpg" "dists/$SUITE/Release"
)

gpg --batch --armor --export "$KEY" >"$REPO_DIR/$KEYRING_NAME"
[ -s "$REPO_DIR/$KEYRING_NAME" ] || die "could not export the public key $KEY"
cat >"$REPO_DIR/$PKG.sources" <<SOURCES
Types: deb
URIs: $REPO_URI
Suites: $SUITE
Components: $COMPONENT
Signed-By: /usr/share/keyrings/$KEYRING_NAME
SOURCES
chmod -R a+rX "$REPO_DIR"

# Self-check: the signatures verify against the exported public key only.
gpg --batch --yes --dearmor -o "$tmp/check.gpg" <"$REPO_DIR/$KEYRING_NAME"
gpgv --keyring "$tmp/check.gpg" "$REPO_DIR/dists/$SUITE/InRelease" 2>/dev/null &&
	gpgv --keyring "$tmp/check.gpg" "$REPO_DIR/dists/$SUITE/Release.gpg" \
		"$REPO_DIR/dists/$SUITE/Release" 2>/dev/null ||
	die "InRelease does not verify against $KEYRING_NAME"
log "repository $REPO_DIR: suite $SUITE, architectures $arches, key $KEY"
