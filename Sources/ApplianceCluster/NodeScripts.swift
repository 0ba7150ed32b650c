/// The POSIX sh run on nodes for staging. They ship inside the binary (no files to install on nodes) and are
/// sent with each command. Each prints machine-readable lines that `NodeStoreReport` parses.
///
/// Store layout under STORE (default /var/lib/appliance/store):
///   sha256/<hex>           verified blobs: a blob appears here only after its digest was checked on the node
///   partial/<hex>          a blob being assembled (never used by anything)
///   incoming/<hex>.<off>   a piece of a blob, starting at byte <off>, as it arrives
///   digests/<hex>.<off>    the SHA-256 of that piece, computed as it arrived (for a piece from byte 0,
///                          the blob's digest when complete); digests/<hex> goes with partial/<hex>
///   bundles/<version>/     manifest.yaml and manifest.yaml.sig of each bundle staged here
///   .staging/              the relay script and temporary peer credentials of a staging run
public enum NodeScripts {
    /// Shared functions: fold arrived pieces into partial files. A piece starting at `off` is valid when
    /// the partial has at least `off` bytes (content-addressed: the bytes before `off` are the same blob).
    static let common = #"""
        set -u
        STORE=${STORE:-/var/lib/appliance/store}
        umask 022
        mkdir -p "$STORE/sha256" "$STORE/partial" "$STORE/incoming" "$STORE/digests" "$STORE/bundles" \
          "$STORE/.staging" || {
          echo "error cannot-create-store $STORE"; exit 3; }
        fold_pieces() {
          for piece in "$STORE"/incoming/*.*; do
            [ -f "$piece" ] || continue
            base=${piece##*/}; hex=${base%%.*}; off=${base#*.}
            part="$STORE/partial/$hex"
            sum="$STORE/digests/$base"
            if [ -f "$STORE/sha256/$hex" ]; then rm -f "$piece" "$sum"; continue; fi
            have=0; [ -f "$part" ] && have=$(stat -c %s "$part")
            # digests/HEX describes partial/HEX exactly as it is; anything that changes the partial drops it.
            rm -f "$STORE/digests/$hex"
            if [ "$off" -eq 0 ]; then
              # The blob from its start: a rename, not a copy (the common case of a first run). Its digest,
              # computed on arrival, goes with it.
              mv -f "$piece" "$part"
              [ -f "$sum" ] && mv -f "$sum" "$STORE/digests/$hex"
            elif [ "$off" -le "$have" ]; then
              truncate -s "$off" "$part" 2>/dev/null || : >"$part"
              cat "$piece" >>"$part" && rm -f "$piece"
            else
              rm -f "$piece"
            fi
            rm -f "$sum"
          done
          # Digests whose partial is gone (finalized, discarded) are stale.
          for d in "$STORE"/digests/*; do
            [ -f "$d" ] || continue
            case ${d##*/} in *.*) [ -f "$STORE/incoming/${d##*/}" ] || rm -f "$d" ;; *) [ -f "$STORE/partial/${d##*/}" ] || rm -f "$d" ;; esac
          done
        }

        """# + digestOf

    /// `digest_of FILE|-`: the SHA-256 of a file or of stdin, as 64 hex digits.
    static let digestOf = #"""
        digest_of() {
          if command -v openssl >/dev/null 2>&1; then
            # openssl uses the CPU's SHA instructions (several times faster than coreutils) where present.
            openssl dgst -sha256 -r "$@" | cut -c1-64
          else
            sha256sum "$@" | cut -c1-64
          fi
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
            # issue 11: the node's OS release (ID-VERSION_ID of /etc/os-release) selects OS-specific artifacts
            if [ -r /etc/os-release ]; then
              os=$(. /etc/os-release && echo "${ID:-}-${VERSION_ID:-}" | tr -d ' ')
              case "$os" in -*|*-) ;; *) echo "os $os" ;; esac
            fi
            echo "end"
            """#

    /// Reads `HEX SIZE` lines on stdin (up to a line `end` or the end of input); folds pieces, checks size
    /// and digest, and only then renames the blob into sha256/. Prints `ok HEX` or `bad HEX REASON` per line.
    /// With arguments DIR MANIFEST-BYTES SIGNATURE-BYTES, the manifest and then its signature follow the
    /// `end` line on stdin, and are recorded in DIR (written to temporary names, then renamed, the manifest
    /// last) when every blob was ok: it prints `recorded`, or `record-failed` when writing them failed.
    public static let finalize =
        common + #"""
            fold_pieces
            allok=1
            bad() { echo "bad $*"; allok=0; }
            while read -r hex size; do
              [ -n "$hex" ] || continue
              [ "$hex" = end ] && break
              if [ -f "$STORE/sha256/$hex" ]; then echo "ok $hex"; continue; fi
              part="$STORE/partial/$hex"
              if [ ! -f "$part" ]; then bad "$hex missing"; continue; fi
              have=$(stat -c %s "$part")
              if [ "$have" -lt "$size" ]; then bad "$hex short $have"; continue; fi
              if [ "$have" -gt "$size" ]; then rm -f "$part"; bad "$hex long $have"; continue; fi
              # The digest computed while the blob arrived, when it covers the whole partial; else read it.
              if [ -f "$STORE/digests/$hex" ]; then sum=$(cat "$STORE/digests/$hex"); else sum=$(digest_of "$part"); fi
              rm -f "$STORE/digests/$hex"
              if [ "$sum" != "$hex" ]; then rm -f "$part"; bad "$hex digest $sum"; continue; fi
              sync "$part" </dev/null 2>/dev/null || :
              mv -f "$part" "$STORE/sha256/$hex" && echo "ok $hex" || bad "$hex rename"
            done
            if [ $# -ge 3 ]; then
              dir=$1
              if [ $allok = 1 ]; then
                if mkdir -p "$dir" && head -c "$2" >"$dir/manifest.yaml.tmp" && head -c "$3" >"$dir/manifest.yaml.sig.tmp" \
                  && mv -f "$dir/manifest.yaml.sig.tmp" "$dir/manifest.yaml.sig" && mv -f "$dir/manifest.yaml.tmp" "$dir/manifest.yaml"
                then echo "recorded"; else rm -f "$dir/manifest.yaml.tmp" "$dir/manifest.yaml.sig.tmp"; echo "record-failed"; fi
              fi
              # Whatever was not recorded is still read, so the sender never waits on a full pipe.
              cat >/dev/null
            fi
            echo "end"
            """#

    /// Run by the relay's tar for each piece it keeps (`--to-command`, member data on stdin, `TAR_FILENAME`
    /// and `TAR_SIZE` set; argument: the run): writes incoming/<piece>, hashes it on the way, records the
    /// digest in digests/<piece> once the whole piece is on disk, and starts flushing it to disk.
    ///
    /// All of that happens in a background process that takes over stdin, so this script returns at once:
    /// tar waits for the command of each member before it reads on, and while it waits it does not read the
    /// stream, which stops the relay passing it on and so stalls the whole chain at every piece (measured:
    /// the chain ran at about 80 % of the link rate, with every node pausing at every piece boundary).
    /// `.staging/keeping-RUN-<piece>` marks a piece still being written; the relay waits for none to be
    /// left before it reports, and a piece that could not be written leaves `.staging/keep-failed-RUN-<piece>`
    /// with the reason.
    public static let keep =
        #"""
        set -u
        STORE=${STORE:-/var/lib/appliance/store}
        umask 022

        """# + digestOf + #"""
            run=$1
            f="$STORE/incoming/$TAR_FILENAME"; d="$STORE/digests/$TAR_FILENAME"
            busy="$STORE/.staging/keeping-$run-$TAR_FILENAME"
            : >"$busy"
            [ -e "$d" ] && rm -f "$d"
            # Without job control a background list reads /dev/null unless told otherwise: hand it stdin as fd 3.
            exec 3<&0
            (
              sum=$(tee "$f" | digest_of -)
              if [ "$(stat -c %s "$f" 2>/dev/null || echo -1)" = "$TAR_SIZE" ]; then
                printf '%s\n' "$sum" >"$d.tmp" && mv -f "$d.tmp" "$d"
                sync "$f" </dev/null >/dev/null 2>&1 &
              else
                echo "cannot write $f: $(df -P "$STORE" | awk 'NR==2 {print $4}') KiB free" \
                  >"$STORE/.staging/keep-failed-$run-$TAR_FILENAME"
              fi
              rm -f "$busy"
            ) <&3 >/dev/null 2>&1 3<&- &
            exec 3<&-
            """#

    /// How a node logs in to the next node of the chain (with `dir` and `run` set in the shell): the run's
    /// peer key, exactly the host key the admin host verified, no prompts, the fastest ciphers.
    static let peerSSHOptions = #"""
        -i "$dir/peer-key-$run" -o BatchMode=yes -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$dir/known-hosts-$run" -o ConnectTimeout=10 -o ServerAliveInterval=10 \
        -o Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr
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
            extract() {
              if [ -s "$want" ]; then
                tar -x -f - -T "$want" --to-command="sh '$dir/keep-$run.sh' $run" 2>"$dir/tar-$run.err"
              else
                cat >/dev/null
              fi
              rc=$?
              # Keep reading so a failing disk here never stalls or breaks the nodes after this one.
              cat >/dev/null
              # Pieces are written and hashed in the background (see keep): wait until none is left.
              while :; do
                set -- "$dir"/keeping-"$run"-*
                [ -e "$1" ] || break
                sleep 0.05
              done
              why=$(grep -v 'Exiting with failure status' "$dir/tar-$run.err" | head -n 1 | tr -d '\n')
              for failed in "$dir"/keep-failed-"$run"-*; do
                [ -f "$failed" ] || continue
                rc=1; [ -n "$why" ] || why=$(head -n 1 "$failed" | tr -d '\n'); rm -f "$failed"
              done
              if [ $rc -ne 0 ]; then
                echo "relay-failed $(hostname) $why" >&2
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
              # Through the connection opened before the stream started (.staging/ctl-RUN), else a new one.
              tee -p "$fifo" | ssh -T -S "$dir/ctl-$run" -o ControlMaster=no \#(peerSSHOptions) \
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
