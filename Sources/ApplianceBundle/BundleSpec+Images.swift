import ApplianceModel
import Foundation

// Issue 15: registry image sources and the images a chart needs, kept apart from the rest of the spec.
extension BundleSpec {
    /// `image: {ref: REGISTRY/REPO:TAG | REGISTRY/REPO@sha256:..., platform: linux/amd64}`.
    static func decodeImageSource(_ v: YAMLValue?) -> Source? {
        guard let v, let m = v.mapping(allowing: ["ref", "platform"]), let refValue = m.require("ref"),
            let ref = refValue.nonEmptyString()
        else { return nil }
        if case .failure(let e) = ImageReference.parse(ref) {
            v.reader.error(e.description, at: refValue)
            return nil
        }
        var platform = ImagePlatform.linuxAMD64.description
        if let pv = m["platform"] {
            guard let text = pv.nonEmptyString() else { return nil }
            guard let p = ImagePlatform(text) else {
                v.reader.error("\(pv.displayPath) must be os/architecture[/variant], like linux/amd64", at: pv)
                return nil
            }
            platform = p.description
        }
        return .image(reference: ref, platform: platform)
    }

    /// `chartRepository: {url: https://..., name: NAME, version: VERSION}`; the URL is a Helm repository
    /// (`https://`, with its `index.yaml`) or an OCI registry path (`oci://HOST/PATH`, the chart being
    /// `HOST/PATH/NAME:VERSION`).
    static func decodeChartRepository(_ v: YAMLValue?) -> Source? {
        guard let v, let m = v.mapping(allowing: ["url", "name", "version"]), let urlValue = m.require("url"),
            let url = urlValue.nonEmptyString(), let name = m.require("name")?.nonEmptyString(),
            let version = m.require("version")?.nonEmptyString()
        else { return nil }
        guard let u = URL(string: url), u.scheme == "https" || u.scheme == "oci", u.host != nil else {
            v.reader.error(
                "\(urlValue.displayPath) must be an https:// URL of a Helm repository or an oci:// registry path",
                at: urlValue)
            return nil
        }
        return .chartRepository(url: url, name: name, version: version)
    }

    /// `images: [REF, ...]` on a chart artifact: every reference must parse.
    static func decodeChartImages(_ am: YAMLMapping, kind: ArtifactKind?) -> [String] {
        guard let v = am["images"] else { return [] }
        if kind != .chart { v.reader.error("only a chart artifact may list 'images'", at: v) }
        guard let list = v.sequence() else { return [] }
        var out: [String] = []
        for item in list {
            guard let ref = item.nonEmptyString() else { continue }
            if case .failure(let e) = ImageReference.parse(ref) {
                item.reader.error(e.description, at: item)
                continue
            }
            out.append(ref)
        }
        return out
    }

    /// Every image artifact pulled from a registry: (component, artifact, reference, platform).
    public var registryImages: [(component: String, artifact: Artifact, reference: String, platform: String)] {
        components.flatMap { c in
            c.artifacts.compactMap { a in
                if case .image(let ref, let platform) = a.source { return (c.name, a, ref, platform) }
                return nil
            }
        }
    }
}
