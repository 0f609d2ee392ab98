#!/usr/bin/env bash
# Opens a replay report in a real headless browser (Debian's chromium: apt install chromium)
# and saves a full-page screenshot, to look at the report as a user's browser shows it.
#
#   tests/scripts/report_screenshot.sh report/index.html shot.png [WIDTHxHEIGHT]
set -euo pipefail
page=$(realpath "$1")
shot=$2
size=${3:-1200x3000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "no chromium found (Debian: apt install chromium)" >&2
  exit 2
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="${size/x/,}" --screenshot="$shot" "file://$page" 2>/dev/null
test -s "$shot"
echo "$shot"
