import Foundation

/// One self-contained HTML page (inline CSS and JS, no network): a node x check matrix grouped by category,
/// colour-coded cells, click a cell for what was observed and how to fix it, a "problems only" filter, and
/// the waivers with their reasons.
public enum HTMLReport {
    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "'", with: "&#39;")
    }

    static let symbol: [CheckStatus: String] = [
        .pass: "✓", .fail: "✗", .warn: "!", .unknown: "?", .skip: "–", .info: "i",
    ]

    public static func render(_ r: PreflightReport) -> String {
        let s = r.summary
        let cols = r.columns
        let verdict =
            r.exitStatus == .success
            ? ("pass", "All checks passed")
            : r.exitStatus == .preflightFailed ? ("fail", "Preflight failed") : ("warn", "Warnings")
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>appliance preflight - \(esc(r.profile))</title>
            <style>
            :root{--pass:#1f9d55;--fail:#d64545;--warn:#e0a100;--unknown:#8e6bbf;--skip:#c3c8cf;--info:#5b8def;--bg:#f6f7f9;--fg:#1d2330}
            *{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
            header{padding:18px 24px;background:#1d2330;color:#fff;display:flex;gap:24px;align-items:center;flex-wrap:wrap}
            header h1{font-size:20px;margin:0}header .meta{opacity:.75}
            .badge{padding:4px 12px;border-radius:14px;font-weight:600;color:#fff}.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}.badge.warn{background:var(--warn);color:#222}
            .counts{display:flex;gap:8px;flex-wrap:wrap}.counts span{padding:3px 10px;border-radius:10px;background:#ffffff22}
            main{display:flex;gap:16px;padding:16px 24px;align-items:flex-start}
            .matrix{overflow:auto;max-height:calc(100vh - 120px);background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;flex:0 1 auto}
            table{border-collapse:separate;border-spacing:0}th,td{padding:4px 6px;border-bottom:1px solid #eef0f3;white-space:nowrap}
            thead th{position:sticky;top:0;background:#fff;z-index:2;font-weight:600;font-size:12px;vertical-align:bottom}
            thead th.node{writing-mode:vertical-rl;transform:rotate(180deg);height:110px;text-align:left}
            th.check{position:sticky;left:0;background:#fff;text-align:left;font-weight:normal;z-index:1;max-width:360px;overflow:hidden;text-overflow:ellipsis}
            th.check code{font-size:12px;color:#445}th.check small{color:#778;margin-left:6px}
            tr.cat th{background:#e9edf3;text-align:left;font-size:13px;position:sticky;left:0}
            td.c{width:30px;height:26px;text-align:center;font-weight:700;color:#fff;cursor:pointer;border-radius:4px;border:2px solid #fff}
            td.c.pass{background:var(--pass)}td.c.fail{background:var(--fail)}td.c.warn{background:var(--warn);color:#222}td.c.unknown{background:var(--unknown)}
            td.c.skip{background:var(--skip);color:#556}td.c.info{background:var(--info)}td.c.none{background:transparent;cursor:default}
            td.c.waived{background-image:repeating-linear-gradient(45deg,#ffffff55 0 4px,transparent 4px 8px)}
            td.c.sel{outline:3px solid #1d2330}
            aside{width:380px;position:sticky;top:16px;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:16px}
            aside h2{font-size:16px;margin:0 0 8px}aside .st{display:inline-block;padding:2px 8px;border-radius:8px;color:#fff;font-weight:600}
            aside dl{margin:8px 0}aside dt{font-weight:600;margin-top:8px;font-size:12px;color:#556;text-transform:uppercase}aside dd{margin:2px 0 0;white-space:pre-wrap;word-break:break-word}
            .legend{display:flex;gap:10px;flex-wrap:wrap;margin-top:12px;font-size:12px}.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:4px;vertical-align:-2px}
            label.f{display:block;margin-top:12px}.unreach{color:var(--fail);font-weight:600}
            body.problems tr.okrow{display:none}
            table.w{margin-top:8px;font-size:12px}
            </style></head><body>
            <header><h1>Preflight: \(esc(r.profile))</h1><span class="badge \(verdict.0)">\(verdict.1)</span>
            <span class="meta">\(esc(r.site ?? "local")) · \(r.nodes.count) nodes · \(r.checks.count) checks · \(String(format: "%.1f", r.duration)) s · \(esc(ISO8601DateFormatter().string(from: r.startedAt)))</span>
            <div class="counts"><span>✓ \(s.pass) pass</span><span>! \(s.warn) warn</span><span>✗ \(s.fail) fail</span><span>? \(s.unknown) could not read</span><span>– \(s.skip) skipped</span><span>\(s.waived) waived</span></div></header>
            <main><div class="matrix"><table><thead><tr><th class="check">check</th>
            """
        for c in cols {
            let n = r.nodes.first { $0.name == c }
            let roles = n?.roles.map(\.rawValue).joined(separator: ",") ?? "admin host"
            h += "<th class=\"node\" title=\"\(esc(roles))\">\(esc(c))\(n?.reachable == false ? " ⚠" : "")</th>"
        }
        h += "</tr></thead><tbody>\n"
        let byCheck = Dictionary(grouping: r.outcomes, by: \.checkID)
        for cat in r.categories {
            let checks = r.checks.filter { $0.category == cat.id && byCheck[$0.id] != nil }
            if checks.isEmpty { continue }
            h += "<tr class=\"cat\"><th colspan=\"\(cols.count + 1)\">\(esc(cat.title))</th></tr>\n"
            for c in checks {
                let os = byCheck[c.id] ?? []
                let ok = !os.contains { [.fail, .warn, .unknown].contains($0.effectiveStatus) }
                h +=
                    "<tr class=\"\(ok ? "okrow" : "bad")\"><th class=\"check\" title=\"\(esc(c.title))\"><code>\(esc(c.id))</code><small>\(esc(c.title))</small></th>"
                for col in cols {
                    guard let o = os.first(where: { $0.node == col }) else {
                        h += "<td class=\"c none\"></td>"; continue
                    }
                    let waived = o.waiver == nil ? "" : " waived"
                    h +=
                        "<td class=\"c \(o.status.rawValue)\(waived)\" data-check=\"\(esc(c.id))\" data-node=\"\(esc(col))\" data-status=\"\(o.status.rawValue)\" data-observed=\"\(esc(o.observed))\" data-waiver=\"\(esc(o.waiver?.reason ?? ""))\">\(symbol[o.status] ?? "")</td>"
                }
                h += "</tr>\n"
            }
        }
        h +=
            "</tbody></table></div>\n<aside id=\"detail\"><h2>Details</h2><p>Click a cell to see what was observed and how to fix it.</p>"
        let unreachable = r.nodes.filter { !$0.reachable }
        if !unreachable.isEmpty {
            h +=
                "<p class=\"unreach\">Unreachable: "
                + unreachable.map { "\(esc($0.name)) (\(esc($0.error ?? "")))" }.joined(separator: "; ") + "</p>"
        }
        h += "<label class=\"f\"><input type=\"checkbox\" id=\"only\"> show problems only</label>"
        h +=
            "<div class=\"legend\">"
            + [CheckStatus.pass, .warn, .fail, .unknown, .skip, .info].map {
                "<span><i style=\"background:var(--\($0.rawValue))\"></i>\($0 == .unknown ? "could not read" : $0.rawValue)</span>"
            }.joined() + "</div>"
        if !r.waivers.isEmpty {
            h +=
                "<h2 style=\"margin-top:16px\">Waivers</h2><table class=\"w\">"
                + r.waivers.map {
                    "<tr><td><code>\(esc($0.checkID))\($0.node.map { "@" + esc($0) } ?? "")</code></td><td>\(esc($0.reason))</td></tr>"
                }.joined() + "</table>"
        }
        h += "</aside></main>\n<script>\nconst checks = {"
        h += r.checks.map { c in
            "\"\(jsEsc(c.id))\":{t:\"\(jsEsc(c.title))\",r:\"\(jsEsc(c.reads))\",s:\"\(c.severity.rawValue)\",f:\"\(jsEsc(c.remediation))\",src:\"\(jsEsc(c.source))\"}"
        }.joined(separator: ",")
        h += """
            };
            const detail = document.getElementById('detail'); const intro = detail.innerHTML;
            function esc(s){const d=document.createElement('div');d.textContent=s;return d.innerHTML}
            document.querySelectorAll('td.c[data-check]').forEach(td => td.addEventListener('click', () => {
              document.querySelectorAll('td.sel').forEach(x => x.classList.remove('sel')); td.classList.add('sel');
              const c = checks[td.dataset.check] || {}; const st = td.dataset.status;
              let html = '<h2>' + esc(td.dataset.check) + ' on ' + esc(td.dataset.node) + '</h2>' +
                '<span class="st" style="background:var(--' + st + ')">' + esc(st === 'unknown' ? 'could not read' : st) + '</span>' +
                '<dl><dt>Check</dt><dd>' + esc(c.t || '') + '</dd><dt>Observed</dt><dd>' + esc(td.dataset.observed) + '</dd>';
              if (td.dataset.waiver) html += '<dt>Waived</dt><dd>' + esc(td.dataset.waiver) + '</dd>';
              if (st !== 'pass' && st !== 'skip') html += '<dt>Remediation</dt><dd>' + esc(c.f || '') + '</dd>';
              html += '<dt>Reads</dt><dd>' + esc(c.r || '') + '</dd><dt>Severity</dt><dd>' + esc(c.s || '') + '</dd><dt>Source</dt><dd>' + esc(c.src || '') + '</dd></dl>';
              detail.innerHTML = html + '<p><a href="#" id="back">back</a></p>';
              document.getElementById('back').onclick = e => { e.preventDefault(); detail.innerHTML = intro; bind(); };
            }));
            function bind(){ const o = document.getElementById('only'); if (o) { o.checked = document.body.classList.contains('problems'); o.onchange = () => document.body.classList.toggle('problems', o.checked); } }
            bind();
            </script></body></html>

            """
        return h
    }

    static func jsEsc(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "<", with: "\\u003c")
    }
}
