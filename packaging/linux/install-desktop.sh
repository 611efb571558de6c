#!/bin/sh
# Install (or remove) Migrator's desktop integration for one user, or under a prefix:
# the .desktop launcher, AppStream metainfo, MIME types for .prototxt/.caffemodel and the
# hicolor icons.  It installs no program: point it at a `migrator-gui` that exists
# (pip install '.[gui]', or the PyInstaller bundle from `make package`).
#
#   packaging/linux/install-desktop.sh                      # ~/.local/share, Exec=migrator-gui
#   packaging/linux/install-desktop.sh --exec /opt/Migrator/migrator-gui
#   packaging/linux/install-desktop.sh --prefix /usr/local/share   # system-wide (as root)
#   packaging/linux/install-desktop.sh --uninstall
#
# In the bundle this script lies in Migrator/_internal/linux/ and defaults --exec to the
# bundle's own migrator-gui.
set -eu

APP_ID=io.github.migrator.Migrator
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
EXEC=
UNINSTALL=0

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) DATA=$2; shift 2 ;;
        --prefix=*) DATA=${1#--prefix=}; shift ;;
        --exec) EXEC=$2; shift 2 ;;
        --exec=*) EXEC=${1#--exec=}; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-desktop.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# icons: a source checkout (packaging/linux -> resources/icons) or the bundle (_internal/linux)
ICONS=
for d in "$HERE/../../resources/icons" "$HERE/../resources/icons"; do
    if [ -f "$d/migrator.svg" ]; then ICONS=$(cd "$d" && pwd); break; fi
done
if [ -z "$EXEC" ] && [ -x "$HERE/../../migrator-gui" ] && [ ! -f "$HERE/../../pyproject.toml" ]; then
    EXEC=$(cd "$HERE/../.." && pwd)/migrator-gui
fi
SIZES="16 22 24 32 48 64 128 256 512"

refresh() {
    if command -v update-mime-database >/dev/null 2>&1; then update-mime-database "$DATA/mime" || true; fi
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$DATA/applications" || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$DATA/icons/hicolor/index.theme" ]; then
        gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
    fi
}

if [ "$UNINSTALL" = 1 ]; then
    rm -f "$DATA/applications/$APP_ID.desktop" "$DATA/metainfo/$APP_ID.metainfo.xml" \
          "$DATA/mime/packages/$APP_ID.xml" "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"
    for s in $SIZES; do rm -f "$DATA/icons/hicolor/${s}x${s}/apps/$APP_ID.png"; done
    refresh
    echo "removed Migrator's desktop integration from $DATA"
    exit 0
fi

[ -n "$ICONS" ] || { echo "install-desktop.sh: resources/icons not found next to $HERE" >&2; exit 1; }
mkdir -p "$DATA/applications" "$DATA/metainfo" "$DATA/mime/packages" "$DATA/icons/hicolor/scalable/apps"
if [ -n "$EXEC" ]; then
    case "$EXEC" in *" "*) Q="\"$EXEC\"" ;; *) Q=$EXEC ;; esac
    sed -e "s|^Exec=migrator-gui|Exec=$Q|" -e "s|^TryExec=migrator-gui|TryExec=$EXEC|" \
        "$HERE/$APP_ID.desktop" > "$DATA/applications/$APP_ID.desktop"
else
    cp "$HERE/$APP_ID.desktop" "$DATA/applications/$APP_ID.desktop"
fi
cp "$HERE/$APP_ID.metainfo.xml" "$DATA/metainfo/$APP_ID.metainfo.xml"
cp "$HERE/$APP_ID.mime.xml" "$DATA/mime/packages/$APP_ID.xml"
cp "$ICONS/migrator.svg" "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"
for s in $SIZES; do
    if [ -f "$ICONS/png/migrator-$s.png" ]; then
        mkdir -p "$DATA/icons/hicolor/${s}x${s}/apps"
        cp "$ICONS/png/migrator-$s.png" "$DATA/icons/hicolor/${s}x${s}/apps/$APP_ID.png"
    fi
done
refresh
echo "installed Migrator's desktop integration into $DATA (Exec=${EXEC:-migrator-gui})"
