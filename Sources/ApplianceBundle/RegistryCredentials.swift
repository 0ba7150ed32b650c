import Foundation

/// A secret string that never prints: `description` and `debugDescription` are redacted, so a credential
/// cannot reach a log line or an error message by interpolation.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

/// Registry credentials, per registry host, from a docker-style `config.json` (or `auth.json`) and the
/// environment. Credentials are sent only to the host they are for (and to the token endpoint that host names).
public struct RegistryCredentials: Sendable {
    public struct Basic: Sendable, Equatable {
        public var username: String
        public var password: Secret
    }

    var byHost: [String: Basic] = [:]
    /// Where they came from, for messages (paths and variable names only).
    public private(set) var sources: [String] = []

    public init() {}

    /// The credentials for `host` (`registry.k8s.io`, `localhost:5000`; Docker Hub under any of its names).
    public func basic(for host: String) -> Basic? {
        if let b = byHost[host] { return b }
        if host == "registry-1.docker.io" || host == "docker.io" {
            return byHost["docker.io"] ?? byHost["index.docker.io"] ?? byHost["registry-1.docker.io"]
        }
        return nil
    }

    public mutating func set(host: String, username: String, password: String) {
        byHost[Self.normalize(host)] = Basic(username: username, password: Secret(password))
    }

    /// Loads, in order (later wins): the config file (`file`, else `$REGISTRY_AUTH_FILE`, else
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), then `APPLIANCE_REGISTRY_USER` and
    /// `APPLIANCE_REGISTRY_PASSWORD` for the host `APPLIANCE_REGISTRY_HOST`.
    public static func load(file: String?, environment: [String: String]) throws(RegistryError) -> RegistryCredentials {
        var out = RegistryCredentials()
        var path = file ?? environment["REGISTRY_AUTH_FILE"]
        if path == nil {
            if let dir = environment["DOCKER_CONFIG"] {
                path = dir + "/config.json"
            } else if let home = environment["HOME"] {
                path = home + "/.docker/config.json"
            }
        }
        if let path, FileManager.default.fileExists(atPath: path) {
            try out.read(configFile: path)
        } else if let file {
            throw .io(path: file, reason: "no such registry credentials file")
        }
        let user = environment["APPLIANCE_REGISTRY_USER"]
        let password = environment["APPLIANCE_REGISTRY_PASSWORD"]
        if user != nil || password != nil {
            guard let user, let password, let host = environment["APPLIANCE_REGISTRY_HOST"], !host.isEmpty else {
                throw .io(
                    path: "environment",
                    reason:
                        "APPLIANCE_REGISTRY_USER, APPLIANCE_REGISTRY_PASSWORD and APPLIANCE_REGISTRY_HOST must be set together"
                )
            }
            out.set(host: host, username: user, password: password)
            out.sources.append("APPLIANCE_REGISTRY_USER/PASSWORD for \(host)")
        }
        return out
    }

    private struct ConfigFile: Decodable {
        struct Entry: Decodable {
            var auth: String?
            var username: String?
            var password: String?
        }
        var auths: [String: Entry]?
    }

    mutating func read(configFile path: String) throws(RegistryError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the registry credentials file")
        }
        let config: ConfigFile
        do {
            config = try JSONDecoder().decode(ConfigFile.self, from: data)
        } catch {
            // The decoder's message could quote file content; say only where it is broken.
            throw .io(path: path, reason: "not a docker-style config.json (invalid JSON or unexpected fields)")
        }
        for (key, entry) in config.auths ?? [:] {
            let host = Self.normalize(key)
            if let auth = entry.auth, let decoded = Data(base64Encoded: auth),
                let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
            {
                byHost[host] = Basic(
                    username: String(text[..<colon]), password: Secret(String(text[text.index(after: colon)...])))
            } else if let u = entry.username, let p = entry.password {
                byHost[host] = Basic(username: u, password: Secret(p))
            }
        }
        sources.append(path)
    }

    /// `https://index.docker.io/v1/` -> `index.docker.io`; `host:5000/` -> `host:5000`.
    static func normalize(_ key: String) -> String {
        var k = Substring(key)
        if let r = k.range(of: "://") { k = k[r.upperBound...] }
        if let slash = k.firstIndex(of: "/") { k = k[..<slash] }
        return String(k)
    }
}
