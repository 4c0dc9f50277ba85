#!/usr/bin/env bash
# Manifest GET rate of an image in a project whose signing policy enforces (the image signed
# in cosign's tag scheme by the trusted key: every GET looks up the .sig tag and uses the
# cached verdict) against the same project not enforcing, on one server, alternating REPEAT
# times (median req/s; wrk, CONNECTIONS connections, DURATION s each). Target: enforcing keeps
# at least 0.8x. The signature is made by Python's `cryptography` (scripts/test-all.sh installs
# it in target/test-tools; any python3 that has it will do). Prints a Markdown table.
#
#   bench/signing.sh                      # REPEAT=3 CONNECTIONS=32 DURATION=10
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-3}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10}
PYTHON=${PYTHON:-$( [ -x target/test-tools/bin/python3 ] && echo target/test-tools/bin/python3 || echo python3)}
for tool in curl wrk bc; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing; install curl wrk bc" >&2; exit 1; }
done
"$PYTHON" -c 'import cryptography' 2>/dev/null || { echo "bench: $PYTHON lacks the cryptography package (scripts/test-all.sh installs it)" >&2; exit 1; }

. bench/gantry_server.sh signing
source bench/lib.sh
AUTH=(-H "Authorization: $BENCH_AUTHORIZATION")
HOST=127.0.0.1:$PORT
mkdir -p "$WORK/small"
push_small_image "$HOST" 0
DIGEST=sha256:$(sha256sum "$WORK/small/0/manifest" | cut -d' ' -f1)

# The signature: cosign's simple signing payload, signed with a fresh P-256 key.
printf '{"critical":{"identity":{"docker-reference":"%s/bench/small0"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
  "$HOST" "$DIGEST" > "$WORK/payload"
SIGNATURE=$("$PYTHON" - "$WORK" <<'PY'
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
work = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
open(work + "/cosign.pub", "wb").write(key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
print(base64.b64encode(key.sign(open(work + "/payload", "rb").read(), ec.ECDSA(hashes.SHA256()))).decode())
PY
)
PAYLOAD_DIGEST=sha256:$(sha256sum "$WORK/payload" | cut -d' ' -f1)
printf '{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$PAYLOAD_DIGEST" > "$WORK/sigconfig"
CONFIG_DIGEST=sha256:$(sha256sum "$WORK/sigconfig" | cut -d' ' -f1)
push_monolithic "$HOST" "$WORK/payload" "$PAYLOAD_DIGEST" bench/small0
push_monolithic "$HOST" "$WORK/sigconfig" "$CONFIG_DIGEST" bench/small0
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"%s","size":%s,"annotations":{"dev.cosignproject.cosign/signature":"%s"}}]}' \
  "$CONFIG_DIGEST" "$(stat -c %s "$WORK/sigconfig")" "$PAYLOAD_DIGEST" "$(stat -c %s "$WORK/payload")" "$SIGNATURE" > "$WORK/sigmanifest"
curl -fsS "${AUTH[@]}" -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$WORK/sigmanifest" "http://$HOST/v2/bench/small0/manifests/${DIGEST/:/-}.sig"

policy() { # --enforce | --no-enforce
  GANTRY_USERNAME=admin GANTRY_PASSWORD=bench-password target/release/gantry signing-policy set bench \
    --registry "$HOST" --key "$WORK/cosign.pub" "$1" >/dev/null
  sleep 2.1 # the policy cache's lifetime: no stale policy in the figures
  local status; status=$(curl -s "${AUTH[@]}" -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$HOST/v2/bench/small0/manifests/v1")
  [ "$status" = 200 ] || { echo "bench: GET answered $status under $1" >&2; exit 1; }
}
rate() {
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "${AUTH[@]}" \
    "http://$HOST/v2/bench/small0/manifests/v1" | awk '/Requests\/sec/ {print $2}'
}
off=(); on=()
for _ in $(seq "$REPEAT"); do
  policy --no-enforce; off+=("$(rate)")
  policy --enforce; on+=("$(rate)")
done
OFF=$(median "${off[@]}"); ON=$(median "${on[@]}")
echo "Machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d); wrk $CONNECTIONS connections, ${DURATION}s, median of $REPEAT alternating runs"
echo
echo "| manifest GET, signed image | req/s |"
echo "|---|---|"
printf '| signing policy not enforced | %.0f |\n' "$OFF"
printf '| signing policy enforced | %.0f |\n' "$ON"
printf '| enforced ÷ not enforced (target ≥ 0.8) | %.2f× |\n' "$(echo "$ON / $OFF" | bc -l)"
