# Sourced by the scripts in scripts/deps: apt_install NAME PACKAGE...
# installs Debian packages (quietly, refreshing the package lists first),
# or fails saying what to install where there is no apt-get.
apt_install() {
  local name=$1
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: $* missing and there is no apt-get: install them" >&2
    exit 1
  fi
  echo "$name: installing $* with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}
