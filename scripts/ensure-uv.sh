# Sourced by dev-server.sh and .ci/run: make sure `uv` runs, in this script and
# in the user's next terminal, where the README's `uv run pytest` is typed.
#
# Without uv, pip installs it for this user. pip puts it in ~/.local/bin, which
# a fresh machine's PATH does not list (Debian adds it only at the next login,
# and only if it existed then), so uv is linked into $UV_LINK_DIR
# (/usr/local/bin) when that is on PATH and writable; otherwise UV_PATH_HINT is
# the one line to run in each terminal, and this prints it.
#
# Debian 12's python3 refuses `pip install --user` (PEP 668, externally managed):
# uv is one binary with no dependencies, so installing it into ~/.local anyway
# touches nothing the system's packages use.

UV_LINK_DIR="${UV_LINK_DIR:-/usr/local/bin}"
UV_PATH_HINT=""

if ! command -v uv >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "uv is needed and python3 has no pip to install it. Install uv, then run this again:" >&2
    echo "  curl -LsSf https://astral.sh/uv/install.sh | sh   (or: apt-get install python3-pip)" >&2
    exit 1
  fi
  echo "Installing uv (pip install --user uv)..."
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
    || python3 -m pip install --quiet uv
  uv_bin=$(python3 -c 'import uv; print(uv.find_uv_bin())')
  case ":$PATH:" in
    *":$UV_LINK_DIR:"*) uv_link_dir_on_path=1 ;;
    *) uv_link_dir_on_path="" ;;
  esac
  if [ -n "$uv_link_dir_on_path" ] && [ -d "$UV_LINK_DIR" ] && [ -w "$UV_LINK_DIR" ]; then
    ln -sf "$uv_bin" "$UV_LINK_DIR/uv"
    echo "Linked $UV_LINK_DIR/uv to $uv_bin, so uv runs in every terminal"
  else
    UV_PATH_HINT="export PATH=\"$(dirname "$uv_bin"):\$PATH\""
    echo "uv is in $(dirname "$uv_bin"), which is not on your PATH. In each new terminal run first"
    echo "(or add it to ~/.profile):"
    echo "  $UV_PATH_HINT"
  fi
  export PATH="$(dirname "$uv_bin"):$PATH"
fi
