# Sourced by scripts/test: the console's browser tests drive Debian's Chromium through
# Playwright (Playwright's own browser download fails on a closed network). A fresh machine
# has no Chromium: install Debian's package when it is missing (as root, or through sudo).
if [ -z "${B2B_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  apt_get="apt-get"
  if [ "$(id -u)" != 0 ]; then apt_get="sudo apt-get"; fi
  echo "Installing Debian's chromium for the browser tests..." >&2
  export DEBIAN_FRONTEND=noninteractive
  $apt_get install -y -q chromium >/dev/null 2>&1 \
    || { $apt_get update -q >/dev/null 2>&1 && $apt_get install -y -q chromium >/dev/null; }
fi
