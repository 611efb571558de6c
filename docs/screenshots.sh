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
  run() { xvfb-run -a -s "-screen 0 1600x1200x24" "$PY" -m migrator.gui.app --settings build/screenshots.ini "$@"; }
else
  run() { QT_QPA_PLATFORM=offscreen "$PY" -m migrator.gui.app --settings build/screenshots.ini "$@"; }
fi
# a small folder of mixed PNG/JPEG images: the comparison input of the "run in progress" shots
imgs=build/screenshot-images
if [ ! -d "$imgs" ]; then
  mkdir -p "$imgs"
  "$PY" - "$imgs" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
y, x = np.mgrid[0:96, 0:96]
for i in range(48):
    img = np.stack([np.sin(x / (5 + i % 7)) * 127 + 128, np.cos(y / (4 + i % 5)) * 127 + 128,
                    rng.integers(0, 255, (96, 96))], -1).astype(np.uint8)
    Image.fromarray(img).save(f"{sys.argv[1]}/img{i:02d}." + ("png" if i % 2 else "jpg"))
PYEOF
fi
rm -f build/screenshots.ini
run --theme light --screenshot "$OUT/main-window.png"
run --theme light --mapping "$map" --inspect epsilon --screenshot "$OUT/epsilon-override.png"
run --theme light --demo lasagne --inspect moving_variance --screenshot "$OUT/lasagne-demo.png"
# fine-tuning: a momentum override (0.99 where alpha = 0.1) and the drift it causes; a taller window
mom=build/screenshots-momentum.mapping.json
echo '{"version": 1, "kinds": {"BatchNorm": {"momentum": 0.99}}}' > "$mom"
run --theme light --size 1500x1100 --demo lasagne --mapping "$mom" --inspect update_drift \
  --screenshot "$OUT/bn-training-drift.png"
run --theme dark --screenshot "$OUT/dark-theme.png"
run --theme light --size 1024x700 --inspect variance --screenshot "$OUT/small-screen.png"
# an image folder chosen and a run on it in progress, light and dark, at both sizes (each from
# fresh settings: the first run is on the default input, the shot during the run on the folder)
for t in light dark; do
  rm -f build/screenshots.ini
  run --theme $t --images "$imgs" --running --screenshot "$OUT/comparing-$t.png"
  rm -f build/screenshots.ini
  run --theme $t --size 1024x700 --images "$imgs" --running --screenshot "$OUT/comparing-small-$t.png"
done
rm -f build/screenshots.ini
# File ▸ Convert a folder…: a real batch over a small generated zoo, its index as a table
if command -v xvfb-run >/dev/null 2>&1; then
  PYTHONPATH=. xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" docs/batch_screenshot.py "$OUT/batch-gui.png"
else
  PYTHONPATH=. QT_QPA_PLATFORM=offscreen "$PY" docs/batch_screenshot.py "$OUT/batch-gui.png"
fi
