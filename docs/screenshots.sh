#!/usr/bin/env bash
# Build the documentation site and photograph two of its pages in headless Chromium (Debian's `chromium` package):
# the segmentation task page and the API reference of the tasks. Writes runs/site-screenshots/*.png.
#
#     bash docs/screenshots.sh [OUT_DIR]
#
# Needs the `docs` extra (pip install -e ".[docs]") and chromium. The site is served on localhost only; Chromium's
# background networking is off (a machine without internet refuses its connections).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-runs/site-screenshots}")
site=$(mktemp -d)
mkdir -p "$out"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site"
port=8765
python -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
profile=$(mktemp -d)
trap 'kill $server; rm -rf "$site" "$profile"' EXIT
sleep 1
shoot() {  # shoot PAGE FILE: one 1400x1800 window of the page
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
    --window-size=1400,1800 --virtual-time-budget=3000 --screenshot="$out/$2" "http://127.0.0.1:$port/$1" \
    2>/dev/null
  echo "$out/$2"
}
shoot segmentation/ task-page.png
shoot api/tasks/ api-page.png
