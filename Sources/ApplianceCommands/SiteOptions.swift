import ArgumentParser

/// `-i site.yaml` and the host-key options, for every command that talks to nodes.
public struct SiteOptions: ParsableArguments, Sendable {
    @Option(name: [.customShort("i"), .customLong("inventory")], help: "The site file (hosts, roles, SSH settings).")
    public var inventory: String

    @Flag(help: "Accept and record the host keys of hosts not yet in known_hosts (a changed key is always refused).")
    public var trustNewHosts = false

    public init() {}
}
