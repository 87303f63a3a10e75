#!/bin/bash
# On the GPU machine: unpack what bench/gpu/carry.py packed, once every piece is in $STASH.
#   bash bench/gpu/unpack.sh stash DIR     copy the pieces carried in DIR into $STASH (one call per piece)
#   bash bench/gpu/unpack.sh               check and unpack $STASH: $DEST/site (Python), $DEST/bin (control
#                                          plane), $DEST/gomodcache (CRDs), $DEST/iproute2; then print the exports
# The machine may lack a zstd binary: the carried zstandard wheel decompresses.
set -eo pipefail
STASH=${STASH:-/root/stash}; DEST=${DEST:-/root/krl}
if [ "${1:-}" = stash ]; then
  mkdir -p "$STASH"
  for f in "$2"/part-* "$2"/SHA256SUMS "$2"/zstandard-*.whl; do [ -e "$f" ] && cp "$f" "$STASH"/; done
  echo "stash: $(ls "$STASH" | tr '\n' ' ')"; exit 0
fi
cd "$STASH"
want=$(wc -l < SHA256SUMS); have=$(ls part-* | wc -l)
[ "$have" = "$want" ] || { echo "unpack: $have of $want pieces in $STASH"; exit 3; }
sha256sum --quiet -c SHA256SUMS || { echo "unpack: checksum mismatch"; exit 4; }
rm -rf "$DEST" && mkdir -p "$DEST/zs"
python3 -m zipfile -e zstandard-*.whl "$DEST/zs"
for g in $(ls part-* | sed -n 's/^part-\(.\).*/\1/p' | sort -u); do
  cat part-"$g"* | PYTHONPATH="$DEST/zs" python3 -c "import sys, zstandard; zstandard.ZstdDecompressor(max_window_size=2**31).copy_stream(sys.stdin.buffer, sys.stdout.buffer, read_size=1<<20, write_size=1<<20)" | tar -C "$DEST" -xf -
done
# Ray, vLLM and the harness on this Python's path for every process (pods too, which get no PYTHONPATH); their
# commands (ray, serve, vllm) on PATH.
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
echo "$DEST/site" > "$site/kuberay-llm-carry.pth"
ln -sf "$DEST"/site/bin/* /usr/local/bin/
# iproute2 for the pod network: an `ip` that finds its carried libraries.
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$DEST/iproute2/lib/x86_64-linux-gnu:$DEST/iproute2/usr/lib/x86_64-linux-gnu" \
  "$DEST/iproute2/bin/ip" > /usr/local/bin/ip && chmod +x /usr/local/bin/ip
echo "unpack: done: $(du -sh "$DEST" | cut -f1) in $DEST"
echo "export KUBERAY_LLM_BIN=$DEST/bin GOMODCACHE=$DEST/gomodcache"
