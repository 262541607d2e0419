#!/usr/bin/env bash
# Installs headless Chromium for the admin's browser tests: the Debian packages `chromium`
# and `chromium-driver` (Playwright drives /usr/bin/chromium; it never downloads a browser),
# and a font when there is none.
# Idempotent and quiet: does nothing when both are present. Needs root and apt-get; without
# them it says what to install and exits 0 (the browser tests then skip with that reason).
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# Screenshots need at least one font.
[ -n "$(find /usr/share/fonts -name '*.ttf' -print -quit 2>/dev/null)" ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-browser: please install ${missing[*]} (Debian packages) for the admin browser tests" >&2
  exit 0
fi

echo "install-browser: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! apt-get update -qq >"$log" 2>&1 \
  || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  cat "$log" >&2
  echo "install-browser: could not install ${missing[*]}; the browser tests will skip" >&2
  exit 0
fi
