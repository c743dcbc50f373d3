#!/bin/sh
# Headless Chromium for the browser tests of the HTML report (tests/test_html_report.py).
# Installs Debian's `chromium` package when it is missing and this user may (root, or sudo
# without a password). Elsewhere it says how and goes on: the browser tests then skip on a
# user's machine, and fail in CI, where every test must run.
for exe in chromium chromium-browser google-chrome; do
  command -v "$exe" >/dev/null 2>&1 && exit 0
done
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then run=""; elif sudo -n true 2>/dev/null; then run="sudo -n"; else run="none"; fi
  if [ "$run" != none ]; then
    export DEBIAN_FRONTEND=noninteractive
    $run apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { $run apt-get update -qq >/dev/null 2>&1 && $run apt-get install -y -qq chromium >/dev/null 2>&1; } \
      && exit 0
  fi
fi
echo "install-browser: headless Chromium is not installed and could not be installed here;" \
     "the browser tests will skip (Debian/Ubuntu: apt-get install chromium)" >&2
exit 0
