import ApplianceModel
import ApplianceSSH
import Foundation

/// The commands a killed run left running on the nodes. sshd does not end a command whose client is gone,
/// so after a SIGKILL (or a dead admin host) an `apt-get install` or a `kubeadm init` goes on by itself on
/// its node; a resume that started the same work beside it would fight it (the dpkg lock, two kubeadm
/// runs). Every command carries its admin process's mark (`CommandOwner`), so the run that takes over the
/// lock waits on each node until the dead run's commands have ended, and only past `limit` kills them.
/// Its steps' checks then see what those commands finished.
enum LeftoverCommands {
    /// What one node reported.
    struct Report: Sendable, Equatable {
        var waitedSeconds: Int
        /// The program names that were still running, sorted.
        var programs: [String]
        var killed: Bool
    }

    /// Shell text that waits for the processes marked with `owner` to end: done after three quiet samples a
    /// second apart (a script between two of its programs has no marked process for a moment; its shell
    /// itself is not marked), killed after `limitSeconds`. Staging's relay connections are left to staging.
    /// Prints `waited SECONDS PROGRAMS...` or `killed SECONDS PROGRAMS...` when there was anything, nothing
    /// otherwise.
    static func script(owner: String, limitSeconds: Int) -> String {
        """
        mark=\(shellQuote(SSHConnection.ownerVariable + "=" + owner))
        start=$(date +%s); quiet=0; seen=
        while :; do
          pids=$(grep -lzxF -e "$mark" /proc/[0-9]*/environ 2>/dev/null | sed -n 's|^/proc/\\([0-9]*\\)/environ$|\\1|p')
          # A staging relay's connection to the next node (ssh -M -S STORE/.staging/ctl-RUN) lives until
          # staging removes it; staging's own sweep ends those of a dead run, so they are not waited for.
          pids=$(for p in $pids; do tr '\\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF '/.staging/ctl-' || echo "$p"; done)
          if [ -z "$pids" ]; then
            quiet=$((quiet + 1)); [ $quiet -ge 3 ] && break; sleep 1; continue
          fi
          quiet=0
          for p in $pids; do n=$(cat /proc/$p/comm 2>/dev/null) && seen="$seen $n"; done
          if [ $(( $(date +%s) - start )) -ge \(limitSeconds) ]; then
            kill -KILL $pids 2>/dev/null
            echo "killed $(( $(date +%s) - start ))$(printf '%s\\n' $seen | sort -u | tr '\\n' ' ' | sed 's/^/ /;s/ *$//')"
            exit 0
          fi
          sleep 1
        done
        [ -n "$seen" ] && echo "waited $(( $(date +%s) - start ))$(printf '%s\\n' $seen | sort -u | tr '\\n' ' ' | sed 's/^/ /;s/ *$//')"
        exit 0
        """
    }

    /// Parses the script's output; nil when nothing was running.
    static func parse(_ output: String) -> Report? {
        guard let line = output.split(separator: "\n").last else { return nil }
        let f = line.split(separator: " ").map(String.init)
        guard f.count >= 2, f[0] == "waited" || f[0] == "killed", let s = Int(f[1]) else { return nil }
        return Report(waitedSeconds: s, programs: Array(f.dropFirst(2)), killed: f[0] == "killed")
    }

    /// Waits on every reachable host of the site, in parallel, and logs what each had left. A host that
    /// cannot be reached is skipped: its steps fail (or find their work done) on their own.
    static func settle(owner: String, session: OperationSession, limit: Duration = .seconds(600)) async {
        let limitSeconds = Int(limit.components.seconds)
        session.logger.notice("waiting for commands the interrupted run (\(owner)) left running on the nodes")
        await withTaskGroup(of: Void.self) { group in
            for host in session.site.hosts {
                group.addTask {
                    let endpoint = session.endpoint(for: host)
                    do {
                        let out = try await session.pool.run(
                            endpoint, script(owner: owner, limitSeconds: limitSeconds),
                            timeout: limit + .seconds(60), label: "commands left running by the interrupted run")
                        guard let report = parse(out.stdoutText) else { return }
                        let what = report.programs.joined(separator: ", ")
                        if report.killed {
                            session.logger.warning(
                                "\(host.name): killed what the interrupted run left running after \(report.waitedSeconds) s: \(what)"
                            )
                        } else {
                            session.logger.notice(
                                "\(host.name): waited \(report.waitedSeconds) s for what the interrupted run left running: \(what)"
                            )
                        }
                    } catch {
                        session.logger.debug("\(host.name): not checked for leftover commands: \(error)")
                    }
                }
            }
        }
    }
}
