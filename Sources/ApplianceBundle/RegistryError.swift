import ApplianceModel

/// What can go wrong pulling an image from a registry (issue 15). Messages never contain credentials or tokens.
public enum RegistryError: ApplianceFailure, Equatable {
    /// The registry could not be reached or the connection broke (after retries).
    case transport(image: String, reason: String)
    /// The registry refused the credentials, or asked for some and none were configured.
    case authentication(image: String, registry: String, reason: String)
    /// The manifest or tag does not exist (HTTP 404), or the index has no manifest for the platform.
    case notFound(image: String, reason: String)
    /// The registry served bytes that do not match their digest, or a malformed manifest.
    case badContent(image: String, reason: String)
    /// Any other HTTP answer.
    case unexpected(image: String, reason: String)
    /// A locked build met an image or package the lock file does not pin, or the registry no longer has it.
    case lock(image: String, reason: String)
    case io(path: String, reason: String)

    public var message: String {
        switch self {
        case let .transport(image, reason): "pulling \(image): \(reason)"
        case let .authentication(image, registry, reason): "pulling \(image): \(registry) refused access: \(reason)"
        case let .notFound(image, reason): "pulling \(image): \(reason)"
        case let .badContent(image, reason): "pulling \(image): \(reason)"
        case let .unexpected(image, reason): "pulling \(image): \(reason)"
        case let .lock(image, reason): "\(image): \(reason)"
        case let .io(path, reason): "\(path): \(reason)"
        }
    }

    public var hint: String? {
        switch self {
        case .transport:
            "check the network path to the registry; for a private CA pass --registry-ca FILE; run again to resume"
        case .authentication(_, let registry, _):
            "log in with `skopeo login \(registry)` or `docker login \(registry)` (a docker-style config.json), "
                + "or set APPLIANCE_REGISTRY_USER and APPLIANCE_REGISTRY_PASSWORD for APPLIANCE_REGISTRY_HOST"
        case .notFound: "check the reference and platform with `skopeo inspect --raw docker://REF`"
        case .badContent: "the registry or a proxy in between served damaged content; nothing was kept"
        case .lock: "rebuild the lock file with `bundle build --lock FILE` (without --locked) on a connected host"
        default: nil
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .authentication: .authentication
        case .badContent: .verification
        default: .failure
        }
    }
}
