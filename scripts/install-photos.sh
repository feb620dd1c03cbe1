#!/usr/bin/env bash
# Installs the Debian packages whose photographs dataset_gen uses (dataset_gen/photo_packages.txt).
# Idempotent: a package already installed, or a folder already unpacked, is skipped.
#
#   bash scripts/install-photos.sh           # as root
#
# "package" lines: apt-get install --no-install-recommends.
# "package FOLDER" lines: apt-get download, then only FOLDER is unpacked below
# /usr/local/share/debian-photos (dataset_gen.sources.EXTRACTED), unless the package is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

LIST=dataset_gen/photo_packages.txt
ROOT=/usr/local/share/debian-photos
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install=()
extract=()
while read -r pkg folder _; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    if installed "$pkg"; then
        continue
    elif [[ -z $folder ]]; then
        install+=("$pkg")
    elif [[ -z $(ls -A "$ROOT$folder" 2>/dev/null) ]]; then
        extract+=("$pkg:$folder")
    fi
done < <(sed 's/#.*//' "$LIST")

if (( ${#install[@]} + ${#extract[@]} == 0 )); then
    echo "install-photos: all photo packages present"
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-photos: needs root and apt-get; missing: ${install[*]} ${extract[*]}" >&2
    exit 1
fi

apt-get update -qq -o DPkg::Lock::Timeout=300
if (( ${#install[@]} )); then
    echo "install-photos: installing ${install[*]}"
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${install[@]}" >/dev/null
fi
if (( ${#extract[@]} )); then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for item in "${extract[@]}"; do
        pkg=${item%%:*} folder=${item#*:}
        echo "install-photos: unpacking $folder from $pkg into $ROOT"
        (cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v "unsandboxed" >&2 || true)
        ls "$tmp/${pkg}"_*.deb >/dev/null
        mkdir -p "$ROOT"
        dpkg-deb --fsys-tarfile "$tmp/${pkg}"_*.deb | tar -x -C "$ROOT" --no-same-owner ".$folder"
        rm -f "$tmp/${pkg}"_*.deb
    done
fi
echo "install-photos: ok"
