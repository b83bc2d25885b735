#!/usr/bin/env bash
# Build the Debian package albatross-py_<version>_<arch>.deb from this tree.
#
#   packaging/debian/build-deb.sh [-o OUTDIR]      (default OUTDIR: dist/)
#
# Layout (as albatross's own Debian package, spec 2.6):
#   /usr/lib/albatross-py/            our package and its dependencies (pip --target)
#   /usr/libexec/albatross/<daemon>   albatrossd, albatross-console, -stats, -log,
#                                     -influx, -prometheus, -tls-endpoint
#   /usr/bin/                         albatross-client, vmmc, albatross-wire
#   /usr/lib/systemd/system/          units and sockets; /usr/lib/tmpfiles.d/albatross.conf
#   /etc/default/albatross            conffile read by the units (+ /etc/logrotate.d/albatross-py)
# postinst creates the albatross user and group (uid/gid 496 when free),
# /var/lib/albatross/{block,crl} and /var/log/albatross.
#
# The dependencies come from PyPI as wheels (Debian 12's python3-cryptography
# is too old).  cryptography and cffi are compiled, so the package is built
# for this machine's architecture and this Python's minor version; without
# compiled modules it would be Architecture: all.
#
# Needs: python3 (>= 3.11) with pip, dpkg-deb; network access to PyPI (or a
# pip cache / PIP_INDEX_URL).  Runs as any user (--root-owner-group).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
outdir=$repo/dist
python=${PYTHON:-python3}
while getopts "o:h" opt; do
  case $opt in
    o) outdir=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

version=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
pyminor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

work=$(mktemp -d "${TMPDIR:-/tmp}/albatross-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
lib=$root/usr/lib/albatross-py

echo "build-deb: albatross-py $version (python $pyminor)"

# -- the Python tree ---------------------------------------------------------------------
# from a clean copy: setuptools would reuse (and leave) build/ in the checkout,
# and a stale build/lib can put deleted modules into the wheel
mkdir "$work/src"
cp -a "$repo/pyproject.toml" "$repo/README.md" "$repo/albatross_py" "$work/src/"
find "$work/src" -name __pycache__ -type d -prune -exec rm -rf {} +
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/wheels" "$work/src"
"$python" -m pip install --quiet --disable-pip-version-check --no-compile \
  --no-warn-script-location --only-binary=:all: \
  --target "$lib" "$work"/wheels/albatross_py-*.whl
rm -rf "$lib/bin"   # console scripts with the build machine's interpreter
find "$lib" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$lib" -name '*.dist-info' -type d -exec rm -f {}/RECORD {}/INSTALLER {}/direct_url.json \;

# -- wrappers ----------------------------------------------------------------------------
# name, directory, module, function.  The last three are not in pyproject.toml
# on every branch yet; a wrapper is written only when its module is there.
entry_points=$(
  "$python" - "$repo/pyproject.toml" <<'EOF'
import sys, tomllib
scripts = dict(tomllib.load(open(sys.argv[1], "rb"))["project"]["scripts"])
scripts.setdefault("albatross-tls-endpoint", "albatross_py.daemons.tls_endpoint:main")
scripts.setdefault("albatross-client", "albatross_py.client.cli:main")
scripts.setdefault("vmmc", "albatross_py.client.cli:vmmc_main")
for name, target in sorted(scripts.items()):
    print(name, target)
EOF
)
mkdir -p "$root/usr/bin" "$root/usr/libexec/albatross"
while read -r name target; do
  module=${target%%:*}
  func=${target##*:}
  if [ ! -f "$lib/${module//.//}.py" ]; then
    echo "build-deb: warning: $module is not in the tree, no $name" >&2
    continue
  fi
  case $name in
    albatross-client|vmmc|albatross-wire) dest=$root/usr/bin/$name ;;
    *) dest=$root/usr/libexec/albatross/$name ;;
  esac
  # -I: isolated mode, neither PYTHONPATH nor the user's site-packages nor the
  # current directory can put code into a daemon that runs as root.
  cat > "$dest" <<EOF
#!/usr/bin/python3 -I
# $name from albatross-py $version ($module:$func)
import sys

sys.path.insert(0, "/usr/lib/albatross-py")
from $module import $func

sys.exit($func())
EOF
  chmod 0755 "$dest"
done <<< "$entry_points"

# -- systemd, configuration, documentation, completion, man pages ------------------------
install -d "$root/usr/lib/systemd/system" "$root/usr/lib/tmpfiles.d"
install -m 0644 "$repo"/packaging/systemd/albatross_*.service "$repo"/packaging/systemd/albatross_*.socket \
  "$root/usr/lib/systemd/system/"
install -m 0644 "$repo/packaging/systemd/albatross.tmpfiles" "$root/usr/lib/tmpfiles.d/albatross.conf"
install -D -m 0644 "$repo/etc/default/albatross" "$root/etc/default/albatross"
install -D -m 0644 "$repo/packaging/systemd/albatross.logrotate" "$root/etc/logrotate.d/albatross-py"
install -d -m 0750 "$root/etc/albatross"
doc=$root/usr/share/doc/albatross-py
install -D -m 0644 "$repo/README.md" "$doc/README.md"
for f in "$repo"/docs/*.md; do
  [ -e "$f" ] && install -m 0644 "$f" "$doc/"
done
if [ -d "$repo/etc/example-ca" ]; then
  install -d "$doc/examples/example-ca"
  install -m 0644 "$repo/etc/example-ca/README.md" "$doc/examples/example-ca/"
  install -m 0755 "$repo/etc/example-ca/make-example.sh" "$doc/examples/example-ca/"
fi
cat > "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: albatross-py
Comment: A Python re-implementation of robur's albatross. The bundled Python
 libraries under /usr/lib/albatross-py carry their own licences in their
 *.dist-info directories.

Files: *
License: ISC
EOF
comp=$root/usr/share/bash-completion/completions
install -D -m 0644 "$repo/packaging/completion/albatross-client.bash" "$comp/albatross-client"
ln -s albatross-client "$comp/vmmc"
# man pages, generated from the parsers like the completion (albatross_py/client/docgen.py)
for page in "$repo"/packaging/man/*.[18]; do
  dir=$root/usr/share/man/man${page##*.}
  install -D -m 0644 "$page" "$dir/$(basename "$page")"
  gzip -9n "$dir/$(basename "$page")"
done
echo ".so man1/albatross-client.1" | gzip -9n > "$root/usr/share/man/man1/vmmc.1.gz"

# -- control files -----------------------------------------------------------------------
if find "$lib" -name '*.so' -print -quit | grep -q .; then
  arch=$(dpkg --print-architecture)
  # compiled modules for this Python (cffi's _cffi_backend.cpython-311-...)
  if find "$lib" -name "*.cpython-${pyminor/./}-*.so" -print -quit | grep -q .; then
    pydep="python3 (>= $pyminor), python3 (<< ${pyminor%.*}.$((${pyminor#*.} + 1)))"
  else
    pydep="python3 (>= $pyminor)"
  fi
else
  arch=all
  pydep="python3 (>= 3.11)"
fi
install -d -m 0755 "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: albatross-py
Version: $version
Architecture: $arch
Maintainer: albatross-py developers <albatross-py@localhost>
Installed-Size: $size
Depends: $pydep, iproute2, passwd
Recommends: qemu-system-x86, logrotate
Suggests: telegraf | influxdb, prometheus
Section: admin
Priority: optional
Homepage: https://github.com/robur-coop/albatross
Description: hierarchical, policy-enforcing VM supervisor (albatross in Python)
 A re-implementation of robur's albatross: albatrossd supervises unikernels
 (solo5) and Linux VMs (QEMU/KVM) under policies delegated with X.509
 certificates; albatross-console, albatross-stats, the TLS endpoint and the
 Influx and Prometheus exporters run unprivileged as user albatross.
 It speaks albatross's wire protocol (version 5) byte for byte, so
 albatross's own clients and certificates work against it.
EOF
printf '%s\n' /etc/default/albatross /etc/logrotate.d/albatross-py > "$root/DEBIAN/conffiles"
install -m 0755 "$repo/packaging/debian/postinst" "$repo/packaging/debian/prerm" \
  "$repo/packaging/debian/postrm" "$root/DEBIAN/"

deb=$outdir/albatross-py_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
