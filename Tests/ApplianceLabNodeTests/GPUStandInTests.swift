import ApplianceLabNode
import ApplianceModel
import Foundation
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@Suite("GPU stand-ins")
struct GPUStandInTests {
    @Test func driverAbsentIsExit9WithRealMessage() throws {
        let lab = try LabFixture(driver: false)
        let r = lab.smi("-L")
        #expect(r.exitCode == 9)
        #expect(r.stdout.hasPrefix("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."))
        #expect(lab.dcgmi("diag", "-r", "1").exitCode != 0)
    }

    @Test func listMatchesDeclaration() throws {
        let lab = try LabFixture()
        let r = lab.smi("-L")
        #expect(r.exitCode == 0)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 8)
        #expect(lines[0].hasPrefix("GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-"))
        // UUIDs are distinct and stable across runs.
        #expect(Set(lines).count == 8)
        #expect(lab.smi("-L").stdout == r.stdout)
    }

    @Test func xmlParsesAndAgreesWithDeclaration() throws {
        let lab = try LabFixture()
        let r = lab.smi("-q", "-x")
        #expect(r.exitCode == 0)
        #expect(r.stdout.contains("<!DOCTYPE nvidia_smi_log SYSTEM \"nvsmi_device_v12.dtd\">"))
        let doc = try XMLDocument(xmlString: r.stdout, options: [])
        let gpus = try doc.nodes(forXPath: "/nvidia_smi_log/gpu")
        #expect(gpus.count == 8)
        #expect(try doc.nodes(forXPath: "/nvidia_smi_log/attached_gpus").first?.stringValue == "8")
        #expect(try doc.nodes(forXPath: "/nvidia_smi_log/driver_version").first?.stringValue == "535.104.12")
        let names = try doc.nodes(forXPath: "/nvidia_smi_log/gpu/product_name").compactMap(\.stringValue)
        #expect(names == Array(repeating: "NVIDIA A100-SXM4-80GB", count: 8))
        let totals = try doc.nodes(forXPath: "/nvidia_smi_log/gpu/fb_memory_usage/total").compactMap(\.stringValue)
        #expect(totals.allSatisfy { $0 == "81920 MiB" })
        // Same UUIDs as -L.
        let uuids = try doc.nodes(forXPath: "/nvidia_smi_log/gpu/uuid").compactMap(\.stringValue)
        let listed = lab.smi("-L").stdout.split(separator: "\n").map { $0.split(separator: " ").last!.dropLast() }
        #expect(uuids == listed.map(String.init))
        // The real A100 capture's top-level tag order is kept for the tags both carry.
        let fixture = try #require(gpuFixture("nvidia-smi-q-x_a100-sxm4-80gb_mig.xml"))
        let real = try XMLDocument(xmlString: fixture, options: [])
        let realTags = try real.nodes(forXPath: "/nvidia_smi_log/gpu/*").map { $0.name ?? "" }
        let ourTags = (try doc.nodes(forXPath: "/nvidia_smi_log/gpu[1]/*")).map { $0.name ?? "" }
        let common = ourTags.filter(realTags.contains)
        #expect(common.count >= 40)
        #expect(common == realTags.filter(common.contains))
    }

    @Test func textQueryHasOneBlockPerGPUAndColonColumn() throws {
        let lab = try LabFixture()
        let r = lab.smi("-q")
        #expect(r.stdout.contains("==============NVSMI LOG=============="))
        #expect(r.stdout.components(separatedBy: "\nGPU 00000000:").count - 1 == 8)
        let fixture = try #require(gpuFixture("nvidia-smi-q_h800-hgx8_gpu0_ecc-disabled"))
        func colon(_ text: String, _ label: String) -> Int? {
            for line in text.split(separator: "\n")
            where line.trimmingCharacters(in: .whitespaces).hasPrefix(label + " ") {
                guard let i = line.firstIndex(of: ":") else { return nil }
                return line.distance(from: line.startIndex, to: i)
            }
            return nil
        }
        #expect(colon(r.stdout, "Product Name") == colon(fixture, "Product Name"))
        #expect(colon(r.stdout, "Driver Version") == colon(fixture, "Driver Version"))
        // A100 has no GPU fabric info (Hopper and later), NVSwitch baseboard or not.
        #expect(r.stdout.contains("        State                             : N/A"))
        let h100 = try LabFixture(LabFixture.hgxH100())
        #expect(h100.smi("-q").stdout.contains("        State                             : In Progress"))
    }

    @Test func csvQueryHeaderUnitsAndColumns() throws {
        let lab = try LabFixture()
        let fields =
            "index,name,uuid,pci.bus_id,memory.total,driver_version,mig.mode.current,ecc.errors.uncorrected.volatile.total,temperature.gpu,power.limit"
        let r = lab.smi("--query-gpu=" + fields, "--format=csv")
        #expect(r.exitCode == 0)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let realHeader = try #require(
            gpuFixture("nvidia-smi-query-gpu_requested-fields_DERIVED.csv")?.split(separator: "\n").first)
        #expect(lines[0] == String(realHeader))
        #expect(lines.count == 9)
        for l in lines.dropFirst() { #expect(l.components(separatedBy: ", ").count == 10) }
        #expect(lines[1].contains(", 81920 MiB, 535.104.12, Disabled, 0, "))
        #expect(lines[1].hasSuffix(", 400.00 W"))

        let bare = lab.smi(
            "--query-gpu=memory.total,power.limit,pcie.link.gen.current", "--format=csv,noheader,nounits")
        #expect(bare.stdout.split(separator: "\n").first == "81920, 400.00, 4")

        let bad = lab.smi("--query-gpu=name,bogus.field", "--format=csv")
        #expect(bad.exitCode == 2)
        #expect(bad.stdout.hasPrefix("Field \"bogus.field\" is not a valid field to query."))
    }

    @Test func tableHasCaptureGeometry() throws {
        let lab = try LabFixture()
        let r = lab.smi()
        let ours = r.stdout.split(separator: "\n").filter { $0.hasPrefix("|") || $0.hasPrefix("+") }
        let fixture = try #require(gpuFixture("nvidia-smi_8x-h100-hbm3_table_persistence-off_nccl-tests-264"))
        let real = fixture.split(separator: "\n").filter { $0.hasPrefix("|") || $0.hasPrefix("+") }
        #expect(ours.count == real.count)
        for (a, b) in zip(ours, real) {
            #expect(a.count == b.count, "\(a)")
            // Column separators sit in the same places.
            let pa = a.indices.filter { a[$0] == "|" || a[$0] == "+" }.map { a.distance(from: a.startIndex, to: $0) }
            let pb = b.indices.filter { b[$0] == "|" || b[$0] == "+" }.map { b.distance(from: b.startIndex, to: $0) }
            if a.contains("NVIDIA A100") { #expect(pa == pb) }
        }
    }

    @Test func topologyMatrixIsTabSeparatedAndSquare() throws {
        let lab = try LabFixture()
        let r = lab.smi("topo", "-m")
        #expect(r.exitCode == 0)
        let rows = r.stdout.split(separator: "\n").map(String.init)
        let header = rows[0].split(separator: "\t", omittingEmptySubsequences: false)
        #expect(header.count == 1 + 8 + 2 + 3)
        for i in 0..<8 {
            let cells = rows[1 + i].split(separator: "\t", omittingEmptySubsequences: false)
            #expect(cells.count == header.count)
            #expect(cells[1 + i] == " X ")
            for j in 0..<8 where j != i { #expect(cells[1 + j] == "NV12") }
        }
        #expect(r.stdout.contains("NIC0: mlx5_0"))
        try lab.context.write(LabPaths.faultsDir + "/nvlink-down-1-0", "")
        let down = lab.smi("topo", "-m").stdout.split(separator: "\n")[1].split(separator: "\t")
        #expect(down[2] == "NV11")
    }

    @Test func nvlinkStatusAndFault() throws {
        let lab = try LabFixture()
        #expect(lab.fault("set", "nvlink-down", "0", "3").exitCode == 0)
        let r = lab.smi("nvlink", "-s")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 8 * 13)
        #expect(lines[1] == "\t Link 0: 25 GB/s")
        #expect(lines[4] == "\t Link 3: <inactive>")
        #expect(r.stdout.components(separatedBy: "<inactive>").count == 2)
        let diag = lab.dcgmi("diag", "-r", "2")
        // Fabric manager is not running on this NVSwitch system, so the diag fails for that first.
        #expect(diag.exitCode == 1)
    }

    @Test func faultsOnHardwareTheNodeDoesNotHaveAreRefused() throws {
        let lab = try LabFixture()
        let noGPU = lab.fault("set", "gpu-missing", "8")
        #expect(noGPU.exitCode == 1 && noGPU.stderr.contains("this node has no GPU 8 (it declares 8 GPUs)"))
        let noLink = lab.fault("set", "nvlink-down", "0", "12")
        #expect(noLink.exitCode == 1 && noLink.stderr.contains("GPU 0 has no NVLink 12 (links 0-11)"))
        #expect(lab.fault("set", "ecc-uncorrectable", "9").exitCode == 1)
        #expect(lab.fault("list").stdout.isEmpty)
        #expect(lab.context.read(LabPaths.kernelLog) == nil)
    }

    @Test func missingGPUDisappearsLogsXid79AndExits15() throws {
        let lab = try LabFixture()
        #expect(lab.fault("set", "gpu-missing", "2").exitCode == 0)
        let r = lab.smi("-L")
        #expect(r.exitCode == 15)
        #expect(r.stdout.split(separator: "\n").count == 7)
        #expect(!r.stdout.contains("GPU 2:"))
        #expect(r.stderr.contains("GPU0000:4C:00.0: GPU is lost"))
        let log = try #require(lab.context.read(LabPaths.kernelLog))
        #expect(log.contains("kernel: ["))
        #expect(log.hasSuffix("NVRM: Xid (PCI:0000:4c:00): 79, pid=0, GPU has fallen off the bus.\n"))
        let doc = try XMLDocument(xmlString: lab.smi("-q", "-x").stdout, options: [])
        #expect(try doc.nodes(forXPath: "/nvidia_smi_log/gpu").count == 7)
        #expect(lab.smi("-i", "2", "-q").exitCode == 15)
        let diag = lab.dcgmi("diag", "-r", "1")
        #expect(diag.exitCode == 1)
        #expect(diag.stdout.contains("| GPU Device IDs Detected   | 20b2,20b2,20b2,20b2,20b2,20b2,20b2             |"))
        #expect(lab.fault("clear", "gpu-missing", "2").exitCode == 0)
        #expect(lab.smi("-L").exitCode == 0)
    }

    @Test func eccFaultShowsInEveryFormat() throws {
        let lab = try LabFixture()
        #expect(lab.fault("set", "ecc-uncorrectable", "5", "3").exitCode == 0)
        let csv = lab.smi(
            "--query-gpu=index,ecc.errors.uncorrected.volatile.total,remapped_rows.pending", "--format=csv,noheader")
        #expect(csv.stdout.split(separator: "\n")[5] == "5, 3, Yes")
        #expect(csv.stdout.split(separator: "\n")[4] == "4, 0, No")
        let doc = try XMLDocument(xmlString: lab.smi("-q", "-x").stdout, options: [])
        let dram = try doc.nodes(forXPath: "/nvidia_smi_log/gpu[6]/ecc_errors/volatile/dram_uncorrectable").first?
            .stringValue
        #expect(dram == "3")
        #expect(lab.smi().stdout.contains("00000000:BB:00.0 Off |                    3 |"))
        let diag = lab.dcgmi("diag", "-r", "1")
        #expect(diag.exitCode == 1)
        #expect(diag.stdout.contains("| Page Retirement/Row Remap | Fail "))
    }

    @Test func driverMismatchFault() throws {
        let lab = try LabFixture()
        #expect(lab.fault("set", "driver-mismatch", "535.54.03").exitCode == 0)
        let r = lab.smi("-L")
        #expect(r.exitCode == 18)
        #expect(
            r.stdout == "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.104.12\n"
        )
    }

    @Test func fabricStateFollowsFabricManagerAndDcgmPasses() throws {
        let lab = try LabFixture(LabFixture.hgxH100())
        let before = lab.dcgmi("diag", "-r", "3")
        #expect(before.exitCode == 1)
        #expect(before.stdout.contains("Unable to initiali"))
        #expect(before.stdout.contains("| GPU Memory                | Fail - All "))
        // Level 1 only runs the deployment checks, which pass even without fabric manager.
        #expect(lab.dcgmi("diag", "-r", "1").exitCode == 0)

        let fm = FabricManager(context: lab.context)
        guard case .success = fm.start(pid: getpid()) else { Issue.record("fabric manager did not start"); return }
        let q = lab.smi("--query-gpu=fabric.state,fabric.status", "--format=csv,noheader")
        #expect(q.stdout.split(separator: "\n").allSatisfy { $0 == "Completed, Success" })
        _ = lab.smi("-pm", "1")
        let after = lab.dcgmi("diag", "-r", "3")
        #expect(after.exitCode == 0, "\(after.stdout)")
        #expect(!after.stdout.contains("| Info "))
        // Same table geometry as the real passing capture.
        let real = try #require(gpuFixture("dcgmi-diag-r2_8x-a100-sxm4-80gb_p4de_pass")).split(separator: "\n")
        let width = try #require(real.first { $0.hasPrefix("+---") }).count
        #expect(after.stdout.split(separator: "\n").allSatisfy { $0.count == width || $0.hasPrefix("Successfully") })
        #expect(real.contains("| PCIe                      | Pass - All                                     |"))
        #expect(after.stdout.contains("| PCIe                      | Pass - All                                     |"))
        fm.stop()
        #expect(lab.smi("--query-gpu=fabric.state", "--format=csv,noheader").stdout.hasPrefix("In Progress"))
    }

    @Test func fabricManagerRefusesWithoutNVSwitchOrWithVersionSkew() throws {
        let pcie = try LabFixture(LabFixture.h100PCIe())
        guard case .failure(let e) = FabricManager(context: pcie.context).start(pid: getpid()) else {
            Issue.record("started without NVSwitch")
            return
        }
        #expect(e.output.stderr.contains("don't match with any supported system topology"))
        let hgx = try LabFixture()
        try hgx.context.write(LabPaths.fabricManagerInstalled, "535.54.03\n")
        guard case .failure(let e2) = FabricManager(context: hgx.context).start(pid: getpid()) else {
            Issue.record("started with a skewed version")
            return
        }
        #expect(e2.output.stderr.contains("don't match with driver version 535.104.12"))
    }

    @Test func pcieProfileHasNoLinksAndFabricNA() throws {
        let lab = try LabFixture(LabFixture.h100PCIe())
        #expect(lab.smi("-L").stdout.split(separator: "\n").count == 2)
        #expect(lab.smi("--query-gpu=fabric.state", "--format=csv,noheader").stdout == "N/A\nN/A\n")
        #expect(lab.dcgmi("diag", "-r", "2").exitCode == 0)
        let topo = lab.smi("topo", "-m").stdout.split(separator: "\n")
        #expect(topo[1].split(separator: "\t")[2] == "PXB")
    }

    @Test(.tags(.realProcess)) func fabricManagerDaemonRunsUntilSIGTERM() async throws {
        let exe = try #require(LabFixture.executable, "appliance-labnode not built")
        let lab = try LabFixture(LabFixture.hgxH100())
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["nvidia-fabricmanager"]
        p.environment = lab.context.environment
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        var running = false
        for _ in 0..<100 {
            if lab.context.pidFileIsLive(LabPaths.fabricManagerPID) { running = true; break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(running)
        #expect(lab.smi("--query-gpu=fabric.state", "--format=csv,noheader").stdout.hasPrefix("Completed"))
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(!lab.context.exists(LabPaths.fabricManagerPID))
    }

    @Test func multiCallResolution() {
        #expect(LabNodeDispatcher.resolve(["/usr/bin/nvidia-smi", "-L"])! == ("nvidia-smi", ["-L"]))
        #expect(
            LabNodeDispatcher.resolve(["appliance-labnode", "kubectl", "get", "nodes"])! == (
                "kubectl", ["get", "nodes"]
            ))
        #expect(LabNodeDispatcher.resolve(["appliance-labnode"]) == nil)
    }
}

extension Tag {
    @Tag static var realProcess: Self
}

@Suite("kubelet capacity")
struct KubeletCapacityTests {
    @Test func gpuCapacityFollowsDriverRuntimeAndHealth() throws {
        let lab = try LabFixture(driver: false)
        let kubelet = Kubelet(context: lab.context)
        #expect(kubelet.resources()["nvidia.com/gpu"] == nil)
        #expect(kubelet.resources()["cpu"] as? String == "256")
        try lab.context.write(LabPaths.driverInstalled, "")
        // The device plugin runs with the nvidia runtime: none in containerd's configuration, no resource.
        #expect(kubelet.resources()["nvidia.com/gpu"] == nil)
        try LabFixture.installNvidiaRuntime(lab.context)
        #expect(kubelet.resources()["nvidia.com/gpu"] as? String == "8")
        // As in the capture of an 8-GPU node advertising 7 after Xid 79.
        #expect(lab.fault("set", "gpu-missing", "3").exitCode == 0)
        #expect(kubelet.resources()["nvidia.com/gpu"] as? String == "7")
        // A GPU with uncorrectable ECC errors is marked unhealthy by the plugin.
        #expect(lab.fault("set", "ecc-uncorrectable", "1").exitCode == 0)
        #expect(kubelet.resources()["nvidia.com/gpu"] as? String == "6")
        // NVML does not initialise on a driver/library mismatch: the plugin advertises nothing.
        #expect(lab.fault("set", "driver-mismatch", "550.90.07").exitCode == 0)
        #expect(kubelet.resources()["nvidia.com/gpu"] == nil)
    }

    @Test func nvidiaCTKConfiguresContainerdAsTheRealOne() throws {
        let lab = try LabFixture()
        try lab.context.write("/etc/containerd/config.toml", LabFixture.containerdConfig)
        let ctk = NvidiaCTK(context: lab.context)
        let r = ctk.run(["runtime", "configure", "--runtime=containerd", "--set-as-default"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stderr.contains("Wrote updated config to /etc/containerd/conf.d/99-nvidia.toml"))
        let top = try #require(lab.context.read("/etc/containerd/config.toml"))
        // The top-level file only gains the import of the drop-in's directory, right after `version`.
        #expect(
            top
                == LabFixture.containerdConfig.replacingOccurrences(
                    of: "version = 2\n", with: "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"))
        let dropIn = try #require(lab.context.read("/etc/containerd/conf.d/99-nvidia.toml"))
        // The whole CRI section is carried over (containerd 1.x replaces plugin sections whole on import).
        #expect(dropIn.contains("sandbox_image = \"registry.k8s.io/pause:3.10.1\""))
        #expect(dropIn.contains("default_runtime_name = \"nvidia\""))
        #expect(
            dropIn.contains(
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\""
            ))
        #expect(
            dropIn.contains(
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\n  BinaryName = \"/usr/bin/nvidia-container-runtime\"\n  SystemdCgroup = true"
            ))
        #expect(dropIn.hasPrefix("version = 2\n"))
        // Again: nothing changes (the same bytes in both files).
        #expect(ctk.run(["runtime", "configure", "--runtime=containerd", "--set-as-default"]).exitCode == 0)
        #expect(lab.context.read("/etc/containerd/config.toml") == top)
        #expect(lab.context.read("/etc/containerd/conf.d/99-nvidia.toml") == dropIn)
        // Existing imports are kept; other runtimes are refused; a dry run writes nothing.
        let other = try NvidiaCTK.configure(
            topLevel: "version = 2\nimports = [\"/etc/containerd/extra/*.toml\"]\n", dropInPath: "/d/99.toml",
            runtimeName: "nvidia", setAsDefault: false)
        #expect(other.topLevel.hasPrefix("version = 2\nimports = [\"/etc/containerd/extra/*.toml\", \"/d/*.toml\"]"))
        #expect(ctk.run(["runtime", "configure", "--runtime=docker"]).exitCode == 1)
        lab.context.remove("/etc/containerd/conf.d/99-nvidia.toml")
        let dry = ctk.run(["runtime", "configure", "--runtime=containerd", "--dry-run"])
        #expect(dry.stdout.contains("BinaryName") && lab.context.read("/etc/containerd/conf.d/99-nvidia.toml") == nil)
    }
}
