#!/usr/bin/env bash
# tests/colcon_install.sh: a colcon install of this package, actually run, as a ROS 2 user
# would build it (no ROS needed): colcon-core, colcon-cargo and colcon-ros-cargo (pinned, in
# a venv this script creates) with cargo-ament-build 0.1.11 build a workspace holding a copy
# of this checkout, `colcon build --cargo-args --release --locked` (the release profile of
# Cargo.toml); then the install tree is checked (the binaries in lib/clip_perception, the
# ament index marker, package.xml, launch/, config/ and the default model bundle in
# share/clip_perception, the bundle's files against model.yaml's sha256), and the installed
# clip_node, started from the install tree with the installed params file, must load the
# installed default model and answer a Cyclone DDS peer (tests/colcon_install_peer.py,
# inside ../shared/tools/private-net).
#
# Cost: a release build from scratch, ~10-20 min on 2 cores (not shared with `cargo test`'s
# dev-profile target). Not part of .ci/run; run it by hand or in a separate CI job, with
# CLIP_COLCON_BUILD_BASE on a cache to make reruns incremental.
#
# Needs: cargo, python3 with venv and Python's cyclonedds (11.0.1, as .ci/run installs),
# network access for pip / crates.io (build steps only), root for private-net (unshare --net).
#
# Environment:
#   CLIP_COLCON_WS          workspace folder (default: a new temporary folder, removed after
#                           a passing run unless CLIP_COLCON_KEEP=1; kept after a failure)
#   CLIP_COLCON_BUILD_BASE  colcon --build-base; the cargo target dir is
#                           $CLIP_COLCON_BUILD_BASE/clip_perception (default: <ws>/build).
#                           A persistent folder here lets cargo reuse earlier builds.
#   CLIP_COLCON_VENV        venv with colcon (default: ${XDG_CACHE_HOME:-~/.cache}/clip_perception/colcon-venv)
#   CLIP_PRIVATE_NET        private-net tool (default: <repo>/../shared/tools/private-net)
#   CLIP_PEER_PYTHON        python with cyclonedds for the DDS peer (default: python3)
#   CLIP_COLCON_KEEP=1      keep the temporary workspace
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T0=$(date +%s)
step() { echo "[colcon_install +$(( $(date +%s) - T0 ))s] $*"; }
fail() { echo "[colcon_install +$(( $(date +%s) - T0 ))s] FAILED: $*" >&2; exit 1; }

# Pinned tool versions (the ones this script was last run with).
COLCON_PIP=(colcon-core==0.21.3 colcon-cargo==0.2.0 colcon-ros-cargo==0.2.0)
AMENT_BUILD_VERSION=0.1.11
PKG=clip_perception

PRIVATE_NET=${CLIP_PRIVATE_NET:-$REPO/../shared/tools/private-net}
PEER_PYTHON=${CLIP_PEER_PYTHON:-python3}
VENV=${CLIP_COLCON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/clip_perception/colcon-venv}

# --- Preconditions, checked before the long build -------------------------------------
step "preconditions"
command -v cargo >/dev/null || fail "cargo not found"
[ -f "$PRIVATE_NET" ] || fail "private-net tool not found at $PRIVATE_NET (set CLIP_PRIVATE_NET)"
"$PEER_PYTHON" -c "import cyclonedds" 2>/dev/null \
  || fail "$PEER_PYTHON has no cyclonedds (pip install cyclonedds==11.0.1, or set CLIP_PEER_PYTHON)"

TEMP_WS=0
if [ -n "${CLIP_COLCON_WS:-}" ]; then
  WS=$CLIP_COLCON_WS
  mkdir -p "$WS"
  WS=$(cd "$WS" && pwd)
else
  WS=$(mktemp -d "${TMPDIR:-/tmp}/clip_colcon_ws.XXXXXX")
  TEMP_WS=1
fi
BUILD_BASE=${CLIP_COLCON_BUILD_BASE:-$WS/build}
mkdir -p "$BUILD_BASE"
BUILD_BASE=$(cd "$BUILD_BASE" && pwd)
INSTALL=$WS/install
PASSED=0
cleanup() {
  if [ "$PASSED" = 1 ] && [ "$TEMP_WS" = 1 ] && [ "${CLIP_COLCON_KEEP:-}" != 1 ]; then
    rm -rf "$WS"
  elif [ -d "$WS" ]; then
    echo "[colcon_install] workspace kept: $WS" >&2
  fi
}
trap cleanup EXIT
step "workspace $WS, build base $BUILD_BASE"

# --- Tools ----------------------------------------------------------------------------
step "colcon venv: $VENV (${COLCON_PIP[*]})"
if [ ! -x "$VENV/bin/colcon" ] \
   || ! "$VENV/bin/python" - "${COLCON_PIP[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${COLCON_PIP[@]}"
fi
"$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -iE '^(colcon-(core|cargo|ros-cargo|ros)|catkin-pkg|toml) '

step "cargo-ament-build $AMENT_BUILD_VERSION"
installed=$(cargo install --list | sed -n 's/^cargo-ament-build v\([^:]*\):$/\1/p')
if [ -z "$installed" ]; then
  cargo install --locked cargo-ament-build --version "$AMENT_BUILD_VERSION"
elif [ "$installed" != "$AMENT_BUILD_VERSION" ]; then
  echo "note: cargo-ament-build $installed is installed, not $AMENT_BUILD_VERSION; using it" \
       "(cargo install --locked cargo-ament-build --version $AMENT_BUILD_VERSION for the tested one)"
fi
cargo ament-build --help >/dev/null || fail "cargo ament-build does not run"

# --- Workspace ------------------------------------------------------------------------
# A copy, not a symlink (colcon follows both): what a fresh clone holds, i.e. the tracked and
# not-ignored files of this checkout, working-tree state. A symlinked checkout would also
# hand cargo-ament-build's install_to_share copy git-ignored folders such as models/.cache.
step "copying the checkout to $WS/src/$PKG"
rm -rf "$WS/src/$PKG"
mkdir -p "$WS/src/$PKG"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$REPO" && git ls-files -z -co --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$WS/src/$PKG"
else
  tar -C "$REPO" --exclude=./target --exclude=./models/.cache --exclude=./.git -cf - . \
    | tar -xf - -C "$WS/src/$PKG"
fi

# --- Build ----------------------------------------------------------------------------
# colcon-ros-cargo runs `cargo ament-build --install-base <install>/clip_perception --
# --manifest-path ... --target-dir <build base>/clip_perception --quiet <cargo-args>`; a
# second --target-dir in --cargo-args is refused by cargo and CARGO_TARGET_DIR is overridden
# by the flag, so the way to place (and reuse) the target dir is colcon's --build-base.
# `--release` is also what tells cargo-ament-build to install from <target>/release.
step "colcon build --cargo-args --release --locked (nice -n 19)"
rm -rf "$INSTALL" "$WS/log"
build_start=$(date +%s)
if ! (cd "$WS" && nice -n 19 "$VENV/bin/colcon" --log-base "$WS/log" build \
        --base-paths "$WS/src" --build-base "$BUILD_BASE" --install-base "$INSTALL" \
        --cargo-args --release --locked) \
     | sed '/^{"packages":/d'; then  # colcon echoes colcon-cargo's `cargo metadata` JSON
  for f in "$WS/log/latest_build/$PKG/stderr.log" "$WS/log/latest_build/$PKG/stdout_stderr.log"; do
    [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 60 "$f"; }
  done
  fail "colcon build failed"
fi
BUILD_SECS=$(( $(date +%s) - build_start ))
step "colcon build took ${BUILD_SECS}s"

# --- Install tree ---------------------------------------------------------------------
step "checking the install tree $INSTALL"
P=$INSTALL/$PKG
SHARE=$P/share/$PKG
MODEL=$SHARE/models/tabletop
missing=0
need() {  # need TEST PATH WHAT
  if ! test "$1" "$2"; then
    echo "  MISSING: $3: $2" >&2
    missing=$((missing + 1))
  else
    echo "  ok: $3"
  fi
}
need -x "$P/lib/$PKG/clip_node" "the node executable (lib/$PKG/clip_node)"
need -x "$P/lib/$PKG/clip_perception" "the CLI (lib/$PKG/clip_perception)"
need -f "$P/share/ament_index/resource_index/packages/$PKG" "the ament index marker"
need -f "$SHARE/package.xml" "share/$PKG/package.xml"
need -f "$SHARE/launch/clip_node.launch.py" "share/$PKG/launch/clip_node.launch.py"
need -f "$SHARE/config/clip_node.yaml" "share/$PKG/config/clip_node.yaml"
need -f "$MODEL/model.yaml" "the default model bundle (share/$PKG/models/tabletop/model.yaml)"
# setup.sh: colcon-core's own shell; setup.bash comes with colcon-bash (colcon-common-extensions).
need -f "$INSTALL/setup.sh" "colcon's install/setup.sh"
# Every file model.yaml names, with its sha256.
if [ -f "$MODEL/model.yaml" ]; then
  while read -r file sum; do
    if [ ! -f "$MODEL/$file" ]; then
      echo "  MISSING: bundle file named in model.yaml: $MODEL/$file" >&2
      missing=$((missing + 1))
    elif [ "$(sha256sum "$MODEL/$file" | cut -d' ' -f1)" != "$sum" ]; then
      echo "  BAD: $MODEL/$file does not match model.yaml's sha256" >&2
      missing=$((missing + 1))
    else
      echo "  ok: bundle file $file (sha256 as model.yaml says)"
    fi
  done < <(sed -n 's/.*path: *\([^,} ]*\), *sha256: *\([0-9a-f]*\).*/\1 \2/p' "$MODEL/model.yaml")
fi
# A release build: what was installed is <target dir>/release/clip_node.
if cmp -s "$P/lib/$PKG/clip_node" "$BUILD_BASE/$PKG/release/clip_node"; then
  echo "  ok: lib/$PKG/clip_node is the release build ($BUILD_BASE/$PKG/release/clip_node)"
else
  echo "  BAD: lib/$PKG/clip_node is not $BUILD_BASE/$PKG/release/clip_node" >&2
  missing=$((missing + 1))
fi
# Installed binaries without the dependencies' debug info (Cargo.toml's release profile).
node_mb=$(( $(stat -c %s "$P/lib/$PKG/clip_node" 2>/dev/null || echo 0) / 1048576 ))
if [ "$node_mb" -gt 150 ]; then
  echo "  BAD: lib/$PKG/clip_node is $node_mb MB (over 150 MB: debug info installed?)" >&2
  missing=$((missing + 1))
else
  echo "  ok: lib/$PKG/clip_node is $node_mb MB"
fi
[ -e "$SHARE/models/.cache" ] && echo "  note: share/$PKG/models/.cache was installed (a local export cache)"
echo "  install tree ($(du -sh "$P" | cut -f1)):"
(cd "$INSTALL" && find . -maxdepth 6 -not -path '*/rust/src/*' -not -path '*/models/*/*/*' \
   | sort | sed 's/^/    /')
[ "$missing" = 0 ] || fail "$missing install tree check(s) failed"

# --- The installed node answers a Cyclone DDS peer ------------------------------------
step "starting the installed clip_node against a Cyclone DDS peer (in private-net)"
NODE_LOG=$WS/clip_node.log
if ! timeout -k 10 300 bash "$PRIVATE_NET" "$PEER_PYTHON" "$REPO/tests/colcon_install_peer.py" \
       --log "$NODE_LOG" --expect-model "$MODEL" -- \
       "$P/lib/$PKG/clip_node" --ros-args --params-file "$SHARE/config/clip_node.yaml" -p threads:=1; then
  fail "the installed node did not answer the DDS peer (log: $NODE_LOG)"
fi
echo "  node log:"
sed 's/^/    /' "$NODE_LOG" | head -20

PASSED=1
step "PASSED (colcon build ${BUILD_SECS}s; total $(( $(date +%s) - T0 ))s)"
