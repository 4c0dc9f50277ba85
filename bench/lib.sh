# Shared by the side-by-side benchmarks (run.sh, replicas.sh): sourced after they set
# BLOB_MIB, CHUNK_MIB, CONNECTIONS, DURATION, PUSHES, REPEAT and WORK, and an array PIDS that
# their cleanup stops. `measure NAME HOST "PID..." [AUTHORIZATION]` fills R[NAME,*] with push,
# pull, manifest GET, blob HEAD, small-image pushes and peak RSS (summed over the PIDs).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# Any HTTP answer counts (Gantry answers an anonymous /v2/ with 401).
wait_port() { for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/v2/")" != 000 ] && return; sleep 0.05; done; echo "bench: nothing listening on $1" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# Upload helpers (plain curl, identical for both registries but for the credentials).
AUTH=() # curl/wrk/ab arguments adding the Authorization header for the registry measured
location_of() { grep -i '^location:' | tr -d '\r' | awk '{print $2}'; }
absolute() { case "$2" in http*) echo "$2";; *) echo "http://$1$2";; esac; }
with_digest() { case "$1" in *\?*) echo "$1&digest=$2";; *) echo "$1?digest=$2";; esac; }

push_monolithic() { # host file digest repo
  local loc; loc=$(curl -fsS "${AUTH[@]}" -D - -o /dev/null -X POST "http://$1/v2/$4/blobs/uploads/" | location_of)
  curl -fsS "${AUTH[@]}" -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T "$2" "$(with_digest "$(absolute "$1" "$loc")" "$3")"
}
push_small_image() { # host index: the image whose manifest and layer the request benchmarks read
  local host=$1 i=$2 repo="bench/small$2" dir="$WORK/small/$2"
  mkdir -p "$dir"
  printf '{"architecture":"amd64","os":"linux","n":%s}' "$i" > "$dir/config"
  head -c 65536 /dev/urandom > "$dir/layer"
  local cd ld
  cd=sha256:$(sha256sum "$dir/config" | cut -d' ' -f1); ld=sha256:$(sha256sum "$dir/layer" | cut -d' ' -f1)
  push_monolithic "$host" "$dir/config" "$cd" "$repo"
  push_monolithic "$host" "$dir/layer" "$ld" "$repo"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":65536}]}' \
    "$cd" "$(stat -c %s "$dir/config")" "$ld" > "$dir/manifest"
  curl -fsS "${AUTH[@]}" -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$dir/manifest" "http://$host/v2/$repo/manifests/v1"
}

declare -A R
measure() { # name host "pid..." [authorization header value]
  local name=$1 host=$2 pid=$3 t0 t1
  export BENCH_AUTHORIZATION=${4:-}
  AUTH=(); [ -n "$BENCH_AUTHORIZATION" ] && AUTH=(-H "Authorization: $BENCH_AUTHORIZATION")
  echo "== $name" >&2
  # Pushes go through a sendfile client: curl -T alone needs ~1.45 s per GiB here, more than the
  # registries' own work, and would measure curl.
  local i secs mono=() chunked=() pull=()
  for i in $(seq "$REPEAT"); do
    secs=$(python3 bench/blob_push.py "$host" bench/big "$WORK/mono$i.bin" "$(cat "$WORK/mono$i.digest")" monolithic)
    mono+=("$(echo "$BLOB_MIB / 1024 / $secs" | bc -l)")
    secs=$(python3 bench/blob_push.py "$host" bench/big "$WORK/chunked$i.bin" "$(cat "$WORK/chunked$i.digest")" chunked "$((CHUNK_MIB << 20))")
    chunked+=("$(echo "$BLOB_MIB / 1024 / $secs" | bc -l)")
  done
  R[$name,push_mono]=$(median "${mono[@]}")
  R[$name,push_chunked]=$(median "${chunked[@]}")
  local url="http://$host/v2/bench/big/blobs/$(cat "$WORK/mono1.digest")"
  curl -fsS "${AUTH[@]}" -o /dev/null "$url" # warm the page cache alike
  for i in $(seq "$REPEAT"); do
    pull+=("$(curl -fsS "${AUTH[@]}" -o /dev/null -w '%{speed_download}' "$url" | awk '{print $1 / 1073741824}')")
  done
  R[$name,pull]=$(median "${pull[@]}")

  push_small_image "$host" 0
  local accept='application/vnd.oci.image.manifest.v1+json'
  R[$name,manifest_get]=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Accept: $accept" "${AUTH[@]}" \
    "http://$host/v2/bench/small0/manifests/v1" | awk '/Requests\/sec/ {print $2}')
  local layer; layer=sha256:$(sha256sum "$WORK/small/0/layer" | cut -d' ' -f1)
  R[$name,blob_head]=$(ab -k -i -q -c"$CONNECTIONS" -t"$DURATION" -n 10000000 "${AUTH[@]}" \
    "http://$host/v2/bench/small0/blobs/$layer" 2>/dev/null | awk '/Requests per second/ {print $4}')

  R[$name,pushes]=$(python3 bench/small_pushes.py "$host" "$PUSHES")
  local rss=0 one
  for one in $pid; do rss=$(echo "$rss + $(peak_rss_mib "$one")" | bc -l); done
  R[$name,rss]=$rss
}

prepare_blobs() { # the blobs every registry measured pushes: REPEAT of each kind
  echo "preparing data: $((2 * REPEAT)) blobs of ${BLOB_MIB} MiB" >&2
  for i in $(seq "$REPEAT"); do
    for kind in mono chunked; do
      head -c "$((BLOB_MIB << 20))" /dev/urandom > "$WORK/$kind$i.bin"
      echo "sha256:$(sha256sum "$WORK/$kind$i.bin" | cut -d' ' -f1)" > "$WORK/$kind$i.digest"
    done
  done
  sync # the fresh test data must not be written back while the first registry is measured
}

