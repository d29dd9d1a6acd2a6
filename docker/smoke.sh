#!/usr/bin/env bash
# Build the image for real and use it offline: too heavy for every CI run, run it before a release.
#
#   docker/smoke.sh            (as root or a docker-group user, from anywhere in the repository)
#
# 1. a local Debian base (docker/make-base-image.sh) unless SMOKE_BASE names another image;
# 2. a CPU build: torch from wheels staged in docker/wheels/ (fetched with the host's pip, which may take
#    them from a local mirror), everything else from PyPI through --network host, the host pip's CA bundle
#    passed as the pip_ca build secret;
# 3. inside the image with --network none and a read-only root file system: `csbsr env --strict`,
#    `csbsr segment` on sample_data/, then the same inputs as SMOKE_SHARDS shards (one run folder) merged
#    with `csbsr summary merge`; every output is checked and the merged summary must equal the unsharded
#    one byte for byte;
# 4. dangling images are removed; the image is kept if it is smaller than SMOKE_KEEP_MB.
#
# Environment: DOCKER (client), SMOKE_BASE, SMOKE_TORCH_SPEC, SMOKE_TAG, SMOKE_SHARDS, SMOKE_KEEP_MB, SMOKE_TILE,
# PIP_CA (CA bundle; default the one `pip config list` names).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
base="${SMOKE_BASE:-local/debian:bookworm}"
torch_spec="${SMOKE_TORCH_SPEC:-torch==2.14.1+cpu torchvision==0.29.1+cpu}"  # the docs' CPU build
tag="${SMOKE_TAG:-csbsr:smoke}"
shards="${SMOKE_SHARDS:-3}"  # the two sample frames fall in shards 1 and 2: a real split and an empty shard
keep_mb="${SMOKE_KEEP_MB:-3000}"
tile="${SMOKE_TILE:-128x192}"  # HxW crops of the sample frames: minutes, not 20, on a loaded 2-core host

step() { printf '\n== %s\n' "$*"; }
die() { echo "smoke: $*" >&2; exit 1; }

# BuildKit is needed (RUN --mount): the buildx plugin, or a client older than 23 with DOCKER_BUILDKIT=1
# (Debian bookworm's docker.io).
pick_docker() {
  local cand major
  for cand in docker /usr/bin/docker; do
    if "$cand" buildx version >/dev/null 2>&1; then echo "$cand"; return; fi
  done
  for cand in docker /usr/bin/docker; do
    major="$("$cand" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" || continue
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then echo "$cand"; return; fi
  done
  die "needs BuildKit: install the docker buildx plugin"
}
docker="${DOCKER:-$(pick_docker)}"
export DOCKER_BUILDKIT=1
"$docker" info >/dev/null 2>&1 || die "no docker daemon reachable with $docker (start dockerd)"

pip_cert() { python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" | head -n1; }
ca="${PIP_CA:-$(pip_cert)}"
work="$(mktemp -d /var/tmp/csbsr-smoke.XXXXXX)"
staged=()
cleanup() {
  "$docker" ps -q --filter "label=csbsr-smoke=$$" | xargs -r "$docker" rm -f >/dev/null
  rm -f "${staged[@]}"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "base image $base"
if [ "$base" = "local/debian:bookworm" ]; then
  DOCKER="$docker" "$repo/docker/make-base-image.sh" "$base"
fi
"$docker" image inspect "$base" >/dev/null

step "staging torch wheels: $torch_spec"
# shellcheck disable=SC2086  # the spec is several requirements
python3 -m pip download --quiet --no-deps --dest "$work/wheels" $torch_spec 2>"$work/pip.log" \
  || { cat "$work/pip.log"; die "cannot fetch $torch_spec"; }
for wheel in "$work"/wheels/*.whl; do
  dest="$repo/docker/wheels/$(basename "$wheel")"
  [ -e "$dest" ] || { mv "$wheel" "$dest"; staged+=("$dest"); }
done
ls -l "$repo/docker/wheels"

step "docker build (base $base, extra onnx)"
secret=()
if [ -n "$ca" ]; then secret=(--secret "id=pip_ca,src=$ca"); echo "pip CA bundle: $ca"; fi
start=$SECONDS
if ! "$docker" build --network host "${secret[@]}" \
  --build-arg "BASE_IMAGE=$base" --build-arg "TORCH_SPEC=$torch_spec" --build-arg CSBSR_EXTRA=onnx \
  --progress plain -t "$tag" "$repo" >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log"
  die "build failed"
fi
grep -E '^#[0-9]+ (\[|DONE|CACHED|naming)' "$work/build.log" | grep -v '^#[0-9]* \[internal\]' || true
echo "built $tag in $((SECONDS - start)) s"
"$docker" image inspect "$tag" -f 'user {{.Config.User}}; entrypoint {{.Config.Entrypoint}}; '\
'volumes {{.Config.Volumes}}; workdir {{.Config.WorkingDir}}'
size_mb=$(( $("$docker" image inspect -f '{{.Size}}' "$tag") / 1000000 ))
echo "image size: ${size_mb} MB"

# As the Kubernetes manifest runs it: no network, read-only root file system, no capabilities. In the
# background and waited for, so that Ctrl-C stops the script at once (the EXIT trap removes the container).
secure=(--label "csbsr-smoke=$$" --network none --read-only --tmpfs /tmp --cap-drop ALL
  --security-opt no-new-privileges)
run() {
  "$docker" run --rm "${secure[@]}" "$@" &
  wait "$!"
}

step "csbsr env --strict (no network)"
run "$tag" env --strict
[ "$(run --entrypoint id "$tag" -u)" != 0 ] || die "the container runs as root"

out="$work/out"
mkdir -p "$out"
chmod 0777 "$out"  # the container writes as uid 10001
mounts=(-v "$repo/sample_data:/data:ro" -v "$out:/out")

step "small tiles ($tile) of sample_data/drone_crops, cut inside the image"
run --entrypoint /opt/csbsr/bin/python "${mounts[@]}" "$tag" -c '
import glob, os, sys
import cv2
h, w = map(int, sys.argv[1].split("x"))
os.makedirs("/out/inputs")
for f in sorted(glob.glob("/data/drone_crops/*.jpg")):
    cv2.imwrite("/out/inputs/" + os.path.basename(f), cv2.imread(f)[:h, :w])
' "$tile"

step "csbsr segment /out/inputs (no network)"
start=$SECONDS
run "${mounts[@]}" "$tag" segment /out/inputs -o /out/full -q
echo "unsharded run: $((SECONDS - start)) s"

step "csbsr segment --shard K/$shards, then csbsr summary merge (no network)"
start=$SECONDS
for ((k = 0; k < shards; k++)); do
  run "${mounts[@]}" "$tag" segment /out/inputs --shard "$k/$shards" -o /out/sharded -q
done
run "${mounts[@]}" "$tag" summary merge /out/sharded/summary.csv /out/sharded
echo "sharded runs and merge: $((SECONDS - start)) s"

step "docker stop during a run: SIGINT (STOPSIGNAL), exit code 130, no partial output left"
cid="$("$docker" run -d "${secure[@]}" "${mounts[@]}" "$tag" segment /data/drone_crops -o /out/stopped -q)"
for _ in $(seq 120); do  # until the model runs (an interrupt during imports is not the case to test)
  "$docker" logs "$cid" 2>&1 | grep -q ' input(s)' && break
  sleep 1
done
sleep 5
"$docker" stop -t 120 "$cid" >/dev/null
code="$("$docker" wait "$cid")"
"$docker" logs "$cid" 2>&1 | tail -n 2
"$docker" rm "$cid" >/dev/null
[ "$code" = 130 ] || die "docker stop: exit code $code, not 130"
leftovers="$(find "$out/stopped" -name '*.part*' | wc -l)"
[ "$leftovers" = 0 ] || die "docker stop left $leftovers partial file(s)"
echo "exit code $code; no partial files in $(find "$out/stopped" -type f | wc -l) file(s) left"

step "checking the outputs"
python3 - "$out/inputs" "$out" "$shards" <<'EOF'
import csv
import json
import sys
from pathlib import Path

inputs, out, shards = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
images = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
stems = sorted(p.stem for p in inputs.iterdir() if p.suffix.lower() in images)
kinds = {"mask": ".png", "prob": ".png", "overlay": ".jpg", "json": ".json"}

def check_run(run: Path, expected: list[str]) -> None:
    for stem in expected:
        for kind, suffix in kinds.items():
            f = run / kind / f"{stem}{suffix}"
            assert f.is_file() and f.stat().st_size > 0, f"missing or empty: {f}"
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert sorted(r["frame"] for r in rows) == expected, (run, rows)
    assert all(r["status"] == "ok" for r in rows), rows
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    print(f"{run.name}: {len(expected)} frame(s), every output present, summary rows ok, run finished")

check_run(out / "full", stems)
owned = []
for k in range(shards):
    run = out / "sharded" / f"shard-{k}-of-{shards}"
    owned.append(sorted(r["frame"] for r in csv.DictReader((run / "summary.csv").open())))
    check_run(run, owned[-1])
flat = [s for part in owned for s in part]
assert sorted(flat) == stems and len(flat) == len(set(flat)), f"shards not a partition: {owned}"
print(f"shards {owned}: disjoint, union = every input")
full, merged = (out / "full" / "summary.csv").read_bytes(), (out / "sharded" / "summary.csv").read_bytes()
assert merged == full, "the merged summary differs from the unsharded one"
print("merged summary.csv == unsharded summary.csv (byte for byte)")
for stem in stems:
    k = next(k for k in range(shards) if stem in owned[k])
    for kind, suffix in kinds.items():
        if kind != "json":  # json holds the frame's timing
            a = (out / "full" / kind / f"{stem}{suffix}").read_bytes()
            b = (out / "sharded" / f"shard-{k}-of-{shards}" / kind / f"{stem}{suffix}").read_bytes()
            assert a == b, f"{kind} of {stem} differs between the unsharded and the sharded run"
print("mask, prob and overlay files of the shards == the unsharded run's (byte for byte)")
for name in ("full/summary.csv", "sharded/summary.csv"):
    print(f"--- {name}\n" + (out / name).read_text(), end="")
EOF

step "cleanup"
"$docker" image prune -f >/dev/null
if [ "$size_mb" -lt "$keep_mb" ]; then
  echo "kept $tag (${size_mb} MB < ${keep_mb} MB)"
else
  "$docker" image rm "$tag" >/dev/null
  echo "removed $tag (${size_mb} MB >= ${keep_mb} MB)"
fi
"$docker" system df
echo
echo "smoke: OK"
