#!/usr/bin/env bash
# Retake the user guide's screenshots (docs/images/*.png) from the real window: `make screenshots`.
# Under Xvfb when it is installed (a real X server, as users see it), else Qt's offscreen platform.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-docs/images}
mkdir -p "$OUT" build
map=build/screenshots-eps.mapping.json
cat > "$map" <<'JSON'
{"version": 1, "kinds": {"BatchNorm": {"epsilon": 0.001, "variance": "raw"}}}
JSON
if command -v xvfb-run >/dev/null 2>&1; then
  run() { xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" -m migrator.gui.app --settings build/screenshots.ini "$@"; }
else
  run() { QT_QPA_PLATFORM=offscreen "$PY" -m migrator.gui.app --settings build/screenshots.ini "$@"; }
fi
rm -f build/screenshots.ini
run --theme light --screenshot "$OUT/main-window.png"
run --theme light --mapping "$map" --inspect epsilon --screenshot "$OUT/epsilon-override.png"
run --theme light --demo lasagne --inspect moving_variance --screenshot "$OUT/lasagne-demo.png"
run --theme dark --screenshot "$OUT/dark-theme.png"
run --theme light --size 1024x700 --inspect variance --screenshot "$OUT/small-screen.png"
