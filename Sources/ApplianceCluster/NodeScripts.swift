/// The POSIX sh run on nodes for staging. They ship inside the binary (no files to install on nodes) and are
/// sent with each command. Each prints machine-readable lines that `NodeStoreReport` parses.
///
/// Store layout under STORE (default /var/lib/appliance/store):
///   sha256/<hex>           verified blobs: a blob appears here only after its digest was checked on the node
///   partial/<hex>          a blob being assembled (never used by anything)
///   incoming/<hex>.<off>   a piece of a blob, starting at byte <off>, as it arrives
///   bundles/<version>/     manifest.yaml and manifest.yaml.sig of each bundle staged here
///   .staging/              the relay script and temporary peer credentials of a staging run
public enum NodeScripts {
    /// Shared functions: fold arrived pieces into partial files. A piece starting at `off` is valid when
    /// the partial has at least `off` bytes (content-addressed: the bytes before `off` are the same blob).
    static let common = #"""
        set -u
        STORE=${STORE:-/var/lib/appliance/store}
        umask 022
        mkdir -p "$STORE/sha256" "$STORE/partial" "$STORE/incoming" "$STORE/bundles" "$STORE/.staging" || {
          echo "error cannot-create-store $STORE"; exit 3; }
        fold_pieces() {
          for piece in "$STORE"/incoming/*.*; do
            [ -f "$piece" ] || continue
            base=${piece##*/}; hex=${base%%.*}; off=${base#*.}
            part="$STORE/partial/$hex"
            if [ -f "$STORE/sha256/$hex" ]; then rm -f "$piece"; continue; fi
            have=0; [ -f "$part" ] && have=$(stat -c %s "$part")
            if [ "$off" -eq 0 ]; then
              # The whole blob from its start: a rename, not a copy (the common case of a first run).
              mv -f "$piece" "$part"
            elif [ "$off" -le "$have" ]; then
              truncate -s "$off" "$part" 2>/dev/null || : >"$part"
              cat "$piece" >>"$part" && rm -f "$piece"
            else
              rm -f "$piece"
            fi
          done
        }

        """#

    /// Reports what the store holds: `free BYTES`, `have HEX`, `partial HEX BYTES`, `staged VERSION`.
    public static let inventory =
        common + #"""
            fold_pieces
            echo "free $(df -P -B1 "$STORE" | awk 'NR==2 {print $4}')"
            for f in "$STORE"/sha256/*; do [ -f "$f" ] && echo "have ${f##*/}"; done
            for f in "$STORE"/partial/*; do [ -f "$f" ] && echo "partial ${f##*/} $(stat -c %s "$f")"; done
            for d in "$STORE"/bundles/*; do [ -f "$d/manifest.yaml" ] && echo "staged ${d##*/}"; done
            echo "end"
            """#

    /// Reads `HEX SIZE` lines on stdin; folds pieces, checks size and digest, and only then renames the
    /// blob into sha256/. Prints `ok HEX` or `bad HEX REASON` per line.
    public static let finalize =
        common + #"""
            fold_pieces
            while read -r hex size; do
              [ -n "$hex" ] || continue
              if [ -f "$STORE/sha256/$hex" ]; then echo "ok $hex"; continue; fi
              part="$STORE/partial/$hex"
              if [ ! -f "$part" ]; then echo "bad $hex missing"; continue; fi
              have=$(stat -c %s "$part")
              if [ "$have" -lt "$size" ]; then echo "bad $hex short $have"; continue; fi
              if [ "$have" -gt "$size" ]; then rm -f "$part"; echo "bad $hex long $have"; continue; fi
              # openssl uses the CPU's SHA instructions (several times faster than coreutils) where present.
              if command -v openssl >/dev/null 2>&1; then
                sum=$(openssl dgst -sha256 -r "$part" | cut -d' ' -f1)
              else
                sum=$(sha256sum "$part" | cut -d' ' -f1)
              fi
              if [ "$sum" != "$hex" ]; then rm -f "$part"; echo "bad $hex digest $sum"; continue; fi
              sync "$part" 2>/dev/null || :
              mv -f "$part" "$STORE/sha256/$hex" && echo "ok $hex" || echo "bad $hex rename"
            done
            echo "end"
            """#

    /// The relay: reads a tar stream of pieces on stdin, keeps the members listed in .staging/want-RUN,
    /// and, when a next hop is given, passes the whole stream on over SSH with the run's peer key.
    /// Arguments: RUN [HOST PORT USER STORE [HOST PORT USER STORE ...]]. Reports `relay-failed NODE REASON`
    /// on stderr.
    public static let relay =
        common + #"""
            run=$1; shift
            dir="$STORE/.staging"
            want="$dir/want-$run"
            [ -f "$want" ] || : >"$want"
            me=$(hostname)
            extract() {
              if [ -s "$want" ]; then
                tar -x -f - -C "$STORE/incoming" --no-same-owner -T "$want" 2>"$dir/tar-$run.err"
              else
                cat >/dev/null
              fi
              rc=$?
              # Keep reading so a failing disk here never stalls or breaks the nodes after this one.
              cat >/dev/null
              if [ $rc -ne 0 ]; then
                echo "relay-failed $me $(tail -n 1 "$dir/tar-$run.err" | tr -d '\n')" >&2
              fi
              return $rc
            }
            if [ $# -ge 4 ]; then
              host=$1; port=$2; user=$3; nstore=$4; shift 4
              fifo="$dir/fifo-$run-$$"
              rm -f "$fifo"; mkfifo -m 600 "$fifo"
              extract <"$fifo" &
              xpid=$!
              set +e
              # tee -p: a dead next hop (or a failed extract here) does not stop the other output.
              tee -p "$fifo" | ssh -T -i "$dir/peer-key-$run" -o BatchMode=yes -o StrictHostKeyChecking=yes \
                -o UserKnownHostsFile="$dir/known-hosts-$run" -o ConnectTimeout=10 -o ServerAliveInterval=10 \
                -o Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr \
                -p "$port" "$user@$host" "${PEER_PREFIX:-}env STORE='$nstore' PEER_PREFIX='${PEER_PREFIX:-}' sh '$nstore/.staging/relay-$run.sh' $run $*"
              next=$?
              wait $xpid; mine=$?
              rm -f "$fifo"
              [ $next -eq 0 ] || echo "relay-failed $host next-hop-exit-$next" >&2
              [ $mine -eq 0 ] && [ $next -eq 0 ]
            else
              extract
            fi
            """#
}
