import Foundation

/// Where appliance keeps its own state on the admin host (run logs, the lab, caches):
/// `$APPLIANCE_STATE_DIR`, else `$XDG_STATE_HOME/appliance`, else `~/.local/state/appliance`.
public enum StateDirectory {
    public static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["APPLIANCE_STATE_DIR"], !dir.isEmpty { return dir }
        if let xdg = environment["XDG_STATE_HOME"], !xdg.isEmpty { return xdg + "/appliance" }
        return NSHomeDirectory() + "/.local/state/appliance"
    }
}
