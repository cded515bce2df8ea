#!/usr/bin/env bash
# Installs libtessera for C and C++ programs:
#
#   scripts/install.sh --prefix DIR [--libdir DIR] [--includedir DIR] [--from DIR]
#
# Builds the release library (`cargo build --release --lib`) unless --from names a directory
# already holding libtessera.so and libtessera.a (a cargo profile directory), then installs
#
#   INCLUDEDIR/tessera.h, INCLUDEDIR/tessera.hpp     (C header, C++17 header-only wrapper)
#   LIBDIR/libtessera.a
#   LIBDIR/libtessera.so.X.Y.Z                       (SONAME libtessera.so.<SONAME_MAJOR>)
#   LIBDIR/libtessera.so.<SONAME_MAJOR> -> libtessera.so.X.Y.Z
#   LIBDIR/libtessera.so -> libtessera.so.<SONAME_MAJOR>
#   LIBDIR/pkgconfig/tessera.pc                      (link the shared library)
#   LIBDIR/pkgconfig/tessera-static.pc               (link libtessera.a)
#
# LIBDIR defaults to PREFIX/lib and INCLUDEDIR to PREFIX/include. DESTDIR stages the install
# for packagers: files go under $DESTDIR, the .pc files name the final paths. Then:
#
#   cc app.c $(pkg-config --cflags --libs tessera) -o app            # shared
#   cc app.c $(pkg-config --cflags --libs tessera-static) -o app     # static
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
prefix="" libdir="" includedir="" from=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --libdir) libdir="${2:?--libdir needs a directory}"; shift 2 ;;
    --libdir=*) libdir="${1#*=}"; shift ;;
    --includedir) includedir="${2:?--includedir needs a directory}"; shift 2 ;;
    --includedir=*) includedir="${1#*=}"; shift ;;
    --from) from="${2:?--from needs a directory}"; shift 2 ;;
    --from=*) from="${1#*=}"; shift ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$prefix" ] || { echo "install.sh: --prefix is required" >&2; usage; }
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s' "$caller/$1" ;; esac; }
prefix=$(abs "$prefix")
[ -z "$from" ] || from=$(abs "$from")
# pkg-config paths stay relative to ${prefix} when they are the defaults, so a prefix can be
# moved (pkg-config --define-prefix).
pc_libdir="\${prefix}/lib" pc_includedir="\${prefix}/include"
if [ -n "$libdir" ]; then
  case "$libdir" in /*) ;; *) libdir="$prefix/$libdir" ;; esac
  pc_libdir="$libdir"
else
  libdir="$prefix/lib"
fi
if [ -n "$includedir" ]; then
  case "$includedir" in /*) ;; *) includedir="$prefix/$includedir" ;; esac
  pc_includedir="$includedir"
else
  includedir="$prefix/include"
fi

version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -n 1)
soname_major=$(sed -nE 's/^const SONAME_MAJOR: u32 = ([0-9]+);/\1/p' build.rs)
[ -n "$version" ] && [ -n "$soname_major" ] || { echo "install.sh: no version" >&2; exit 1; }
soname="libtessera.so.$soname_major"
real="libtessera.so.$version"

if [ -z "$from" ]; then
  echo "== cargo build --release --lib"
  cargo build --release --lib --quiet
  target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
  from="$target_dir/release"
fi
for f in libtessera.so libtessera.a; do
  [ -f "$from/$f" ] || { echo "install.sh: $from/$f not found" >&2; exit 1; }
done
if command -v readelf >/dev/null 2>&1; then
  found=$(readelf -d "$from/libtessera.so" | sed -nE 's/.*Library soname: \[(.*)\].*/\1/p')
  if [ "$found" != "$soname" ]; then
    echo "install.sh: $from/libtessera.so has SONAME '$found', expected $soname" \
         "(was it built by this checkout's build.rs?)" >&2
    exit 1
  fi
fi

dest_lib="${DESTDIR:-}$libdir" dest_inc="${DESTDIR:-}$includedir"
echo "== installing libtessera $version into ${DESTDIR:-}$prefix"
install -d "$dest_lib/pkgconfig" "$dest_inc"
install -m 0644 include/tessera.h bindings/cpp/tessera.hpp "$dest_inc/"
install -m 0644 "$from/libtessera.a" "$dest_lib/libtessera.a"
install -m 0755 "$from/libtessera.so" "$dest_lib/$real"
ln -sfn "$real" "$dest_lib/$soname"
ln -sfn "$soname" "$dest_lib/libtessera.so"
scripts/pkg-config.sh "$prefix" "$pc_libdir" "$pc_includedir" > "$dest_lib/pkgconfig/tessera.pc"
scripts/pkg-config.sh "$prefix" "$pc_libdir" "$pc_includedir" packaging/tessera-static.pc.in \
  > "$dest_lib/pkgconfig/tessera-static.pc"
chmod 0644 "$dest_lib/pkgconfig/tessera.pc" "$dest_lib/pkgconfig/tessera-static.pc"
echo "installed: $dest_inc/{tessera.h,tessera.hpp}, $dest_lib/{libtessera.a,$real,$soname,libtessera.so}," \
     "$dest_lib/pkgconfig/{tessera.pc,tessera-static.pc}"
