import Foundation

/// One field of `nvidia-smi -q`: the text label and the XML tag of the same datum, so the text (`-q`) and the
/// XML (`-q -x`, DTD v12) forms are rendered from one tree and cannot disagree.
struct QueryField {
    enum Form { case both, textOnly, xmlOnly }
    var label: String
    var tag: String
    var value: String?
    var children: [QueryField]
    var form: Form

    static func v(_ label: String, _ tag: String, _ value: String, _ form: Form = .both) -> QueryField {
        QueryField(label: label, tag: tag, value: value, children: [], form: form)
    }
    static func g(_ label: String, _ tag: String, _ children: [QueryField], _ form: Form = .both) -> QueryField {
        QueryField(label: label, tag: tag, value: nil, children: children, form: form)
    }
}

enum NvidiaSMIQuery {
    /// Column of the ':' in `nvidia-smi -q` text (drivers of the 525/535 era).
    static let colonColumn = 42

    static func timestamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE MMM d HH:mm:ss yyyy"
        var s = f.string(from: date)
        // nvidia-smi (asctime) pads the day with a space: "Fri Aug  4 11:44:30 2023".
        let p = s.split(separator: " ", omittingEmptySubsequences: false)
        if p.count == 5, p[2].count == 1 { s = "\(p[0]) \(p[1])  \(p[2]) \(p[3]) \(p[4])" }
        return s
    }

    static func watts(_ w: Double) -> String { String(format: "%.2f W", w) }

    static func tree(_ g: LabGPU, driver: String) -> [QueryField] {
        let ecc = g.eccEnabled
        let eccCount: (Int) -> String = { ecc ? "\($0)" : "N/A" }
        let devID = g.pciDeviceID.uppercased() + "10DE"
        return [
            .v("Product Name", "product_name", g.name),
            .v("Product Brand", "product_brand", "NVIDIA"),
            .v("Product Architecture", "product_architecture", g.architecture),
            .v("Display Mode", "display_mode", "Disabled"),
            .v("Display Active", "display_active", "Disabled"),
            .v("Persistence Mode", "persistence_mode", g.persistenceMode ? "Enabled" : "Disabled"),
            .v("Addressing Mode", "addressing_mode", "None"),
            .g(
                "MIG Mode", "mig_mode",
                [.v("Current", "current_mig", "Disabled"), .v("Pending", "pending_mig", "Disabled")]),
            .v("MIG Devices", "mig_devices", "None", .xmlOnly),
            .v("Accounting Mode", "accounting_mode", "Disabled"),
            .v("Accounting Mode Buffer Size", "accounting_mode_buffer_size", "4000"),
            .g(
                "Driver Model", "driver_model",
                [.v("Current", "current_dm", "N/A"), .v("Pending", "pending_dm", "N/A")]),
            .v("Serial Number", "serial", g.serial),
            .v("GPU UUID", "uuid", g.uuid),
            .v("Minor Number", "minor_number", "\(g.index)"),
            .v("VBIOS Version", "vbios_version", g.vbiosVersion),
            .v("MultiGPU Board", "multigpu_board", "No"),
            .v("Board ID", "board_id", "0x" + g.pciBus.lowercased() + "00"),
            .v("Board Part Number", "board_part_number", "692-2G\(g.pciDeviceID.uppercased().prefix(3))-0200-000"),
            .v("GPU Part Number", "gpu_part_number", "\(g.pciDeviceID.uppercased())-895-A1"),
            .v("Module ID", "gpu_module_id", "\(g.moduleID)"),
            .g(
                "Inforom Version", "inforom_version",
                [
                    .v("Image Version", "img_version", "G520.0200.00.05"),
                    .v("OEM Object", "oem_object", "2.1"),
                    .v("ECC Object", "ecc_object", "7.16"),
                    .v("Power Management Object", "pwr_object", "N/A"),
                ]),
            .g(
                "GPU Operation Mode", "gpu_operation_mode",
                [.v("Current", "current_gom", "N/A"), .v("Pending", "pending_gom", "N/A")]),
            .v("GSP Firmware Version", "gsp_firmware_version", driver),
            .g(
                "GPU Virtualization Mode", "gpu_virtualization_mode",
                [
                    .v("Virtualization Mode", "virtualization_mode", "None"),
                    .v("Host VGPU Mode", "host_vgpu_mode", "N/A"),
                ]),
            .g(
                "GPU Reset Status", "gpu_reset_status",
                [
                    .v("Reset Required", "reset_required", "No"),
                    .v(
                        "Drain and Reset Recommended", "drain_and_reset_recommended",
                        g.remappedRowsPending ? "Yes" : "No"),
                ]),
            .g("IBMNPU", "ibmnpu", [.v("Relaxed Ordering Mode", "relaxed_ordering_mode", "N/A")]),
            .g(
                "PCI", "pci",
                [
                    .v("Bus", "pci_bus", "0x" + g.pciBus, .textOnly), .v("Bus", "pci_bus", g.pciBus, .xmlOnly),
                    .v("Device", "pci_device", "0x00", .textOnly), .v("Device", "pci_device", "00", .xmlOnly),
                    .v("Domain", "pci_domain", "0x0000", .textOnly), .v("Domain", "pci_domain", "0000", .xmlOnly),
                    .v("Device Id", "pci_device_id", "0x" + devID, .textOnly),
                    .v("Device Id", "pci_device_id", devID, .xmlOnly),
                    .v("Bus Id", "pci_bus_id", g.busID),
                    .v("Sub System Id", "pci_sub_system_id", "0x16C110DE", .textOnly),
                    .v("Sub System Id", "pci_sub_system_id", "16C110DE", .xmlOnly),
                    .g(
                        "GPU Link Info", "pci_gpu_link_info",
                        [
                            .g(
                                "PCIe Generation", "pcie_gen",
                                [
                                    .v("Max", "max_link_gen", "\(g.pcieGeneration)"),
                                    .v("Current", "current_link_gen", "\(g.pcieGeneration)"),
                                    .v("Device Current", "device_current_link_gen", "\(g.pcieGeneration)"),
                                    .v("Device Max", "max_device_link_gen", "\(g.pcieGeneration)"),
                                    .v("Host Max", "max_host_link_gen", "\(g.pcieGeneration)"),
                                ]),
                            .g(
                                "Link Width", "link_widths",
                                [
                                    .v("Max", "max_link_width", "\(g.pcieWidth)x"),
                                    .v("Current", "current_link_width", "\(g.pcieWidth)x"),
                                ]),
                        ]),
                    .g(
                        "Bridge Chip", "pci_bridge_chip",
                        [.v("Type", "bridge_chip_type", "N/A"), .v("Firmware", "bridge_chip_fw", "N/A")]),
                    .v("Replays Since Reset", "replay_counter", "0"),
                    .v("Replay Number Rollovers", "replay_rollover_counter", "0"),
                    .v("Tx Throughput", "tx_util", "0 KB/s"),
                    .v("Rx Throughput", "rx_util", "0 KB/s"),
                    .v("Atomic Caps Inbound", "atomic_caps_inbound", "N/A"),
                    .v("Atomic Caps Outbound", "atomic_caps_outbound", "N/A"),
                ]),
            .v("Fan Speed", "fan_speed", "N/A"),
            .v("Performance State", "performance_state", "P0"),
            .g(
                "Clocks Event Reasons", "clocks_event_reasons",
                [
                    .v("Idle", "clocks_event_reason_gpu_idle", "Active"),
                    .v("Applications Clocks Setting", "clocks_event_reason_applications_clocks_setting", "Not Active"),
                    .v("SW Power Cap", "clocks_event_reason_sw_power_cap", "Not Active"),
                    .v("HW Slowdown", "clocks_event_reason_hw_slowdown", "Not Active"),
                    .v("HW Thermal Slowdown", "clocks_event_reason_hw_thermal_slowdown", "Not Active"),
                    .v("HW Power Brake Slowdown", "clocks_event_reason_hw_power_brake_slowdown", "Not Active"),
                    .v("Sync Boost", "clocks_event_reason_sync_boost", "Not Active"),
                    .v("SW Thermal Slowdown", "clocks_event_reason_sw_thermal_slowdown", "Not Active"),
                    .v("Display Clock Setting", "clocks_event_reason_display_clocks_setting", "Not Active"),
                ]),
            .g(
                "FB Memory Usage", "fb_memory_usage",
                [
                    .v("Total", "total", "\(g.memoryTotalMiB) MiB"),
                    .v("Reserved", "reserved", "\(g.memoryReservedMiB) MiB"),
                    .v("Used", "used", "\(g.memoryUsedMiB) MiB"),
                    .v("Free", "free", "\(g.memoryFreeMiB) MiB"),
                ]),
            .g(
                "BAR1 Memory Usage", "bar1_memory_usage",
                [
                    .v("Total", "total", "131072 MiB"), .v("Used", "used", "1 MiB"), .v("Free", "free", "131071 MiB"),
                ]),
            .g(
                "Conf Compute Protected Memory Usage", "cc_protected_memory_usage",
                [
                    .v("Total", "total", "0 MiB"), .v("Used", "used", "0 MiB"), .v("Free", "free", "0 MiB"),
                ]),
            .v("Compute Mode", "compute_mode", "Default"),
            .g(
                "Utilization", "utilization",
                [
                    .v("Gpu", "gpu_util", "0 %"), .v("Memory", "memory_util", "0 %"),
                    .v("Encoder", "encoder_util", "0 %"), .v("Decoder", "decoder_util", "0 %"),
                    .v("JPEG", "jpeg_util", "0 %"), .v("OFA", "ofa_util", "0 %"),
                ]),
            .g(
                "Encoder Stats", "encoder_stats",
                [
                    .v("Active Sessions", "session_count", "0"), .v("Average FPS", "average_fps", "0"),
                    .v("Average Latency", "average_latency", "0"),
                ]),
            .g(
                "FBC Stats", "fbc_stats",
                [
                    .v("Active Sessions", "session_count", "0"), .v("Average FPS", "average_fps", "0"),
                    .v("Average Latency", "average_latency", "0"),
                ]),
            .g(
                "Ecc Mode", "ecc_mode",
                [
                    .v("Current", "current_ecc", ecc ? "Enabled" : "Disabled"),
                    .v("Pending", "pending_ecc", ecc ? "Enabled" : "Disabled"),
                ]),
            .g(
                "ECC Errors", "ecc_errors",
                [
                    .g(
                        "Volatile", "volatile",
                        [
                            .v("SRAM Correctable", "sram_correctable", eccCount(0)),
                            .v("SRAM Uncorrectable", "sram_uncorrectable", eccCount(0)),
                            .v("DRAM Correctable", "dram_correctable", eccCount(0)),
                            .v("DRAM Uncorrectable", "dram_uncorrectable", eccCount(g.eccUncorrectableVolatile)),
                        ]),
                    .g(
                        "Aggregate", "aggregate",
                        [
                            .v("SRAM Correctable", "sram_correctable", eccCount(0)),
                            .v("SRAM Uncorrectable", "sram_uncorrectable", eccCount(0)),
                            .v("DRAM Correctable", "dram_correctable", eccCount(0)),
                            .v("DRAM Uncorrectable", "dram_uncorrectable", eccCount(g.eccUncorrectableAggregate)),
                        ]),
                ]),
            .g(
                "Retired Pages", "retired_pages",
                [
                    .v("Single Bit ECC", "", "N/A", .textOnly),
                    .v("Double Bit ECC", "", "N/A", .textOnly),
                    .v("Pending Page Blacklist", "", "N/A", .textOnly),
                    .g(
                        "", "multiple_single_bit_retirement",
                        [.v("", "retired_count", "N/A"), .v("", "retired_pagelist", "N/A")], .xmlOnly),
                    .g(
                        "", "double_bit_retirement",
                        [.v("", "retired_count", "N/A"), .v("", "retired_pagelist", "N/A")], .xmlOnly),
                    .v("", "pending_blacklist", "N/A", .xmlOnly),
                    .v("", "pending_retirement", "N/A", .xmlOnly),
                ]),
            .g(
                "Remapped Rows", "remapped_rows",
                [
                    .v("Correctable Error", "remapped_row_corr", "0"),
                    .v("Uncorrectable Error", "remapped_row_unc", "\(g.eccUncorrectableAggregate)"),
                    .v("Pending", "remapped_row_pending", g.remappedRowsPending ? "Yes" : "No"),
                    .v("Remapping Failure Occurred", "remapped_row_failure", "No"),
                    .g(
                        "Bank Remap Availability Histogram", "row_remapper_histogram",
                        [
                            .v("Max", "row_remapper_histogram_max", "\(2560 - g.eccUncorrectableAggregate) bank(s)"),
                            .v("High", "row_remapper_histogram_high", "0 bank(s)"),
                            .v("Partial", "row_remapper_histogram_partial", "\(g.eccUncorrectableAggregate) bank(s)"),
                            .v("Low", "row_remapper_histogram_low", "0 bank(s)"),
                            .v("None", "row_remapper_histogram_none", "0 bank(s)"),
                        ]),
                ]),
            .g(
                "Temperature", "temperature",
                [
                    .v("GPU Current Temp", "gpu_temp", "\(g.temperatureC) C"),
                    .v("GPU T.Limit Temp", "gpu_temp_tlimit", "\(87 - g.temperatureC) C"),
                    .v("GPU Shutdown Temp", "gpu_temp_max_threshold", "92 C"),
                    .v("GPU Slowdown Temp", "gpu_temp_slow_threshold", "89 C"),
                    .v("GPU Max Operating Temp", "gpu_temp_max_gpu_threshold", "87 C"),
                    .v("GPU Target Temperature", "gpu_target_temperature", "N/A"),
                    .v("Memory Current Temp", "memory_temp", "\(g.memoryTemperatureC) C"),
                    .v("Memory Max Operating Temp", "gpu_temp_max_mem_threshold", "95 C"),
                ]),
            .g(
                "GPU Power Readings", "gpu_power_readings",
                [
                    .v("Power Draw", "power_draw", watts(g.powerDrawW)),
                    .v("Current Power Limit", "current_power_limit", watts(Double(g.powerLimitW))),
                    .v("Requested Power Limit", "requested_power_limit", watts(Double(g.powerLimitW))),
                    .v("Default Power Limit", "default_power_limit", watts(Double(g.powerLimitW))),
                    .v("Min Power Limit", "min_power_limit", watts(Double(g.powerLimitW) * 2 / 7)),
                    .v("Max Power Limit", "max_power_limit", watts(Double(g.powerLimitW))),
                ]),
            .g(
                "Clocks", "clocks",
                [
                    .v("Graphics", "graphics_clock", "\(g.graphicsClockMHz) MHz"),
                    .v("SM", "sm_clock", "\(g.graphicsClockMHz) MHz"),
                    .v("Memory", "mem_clock", "\(g.memoryClockMHz) MHz"),
                    .v("Video", "video_clock", "765 MHz"),
                ]),
            .g(
                "Applications Clocks", "applications_clocks",
                [
                    .v("Graphics", "graphics_clock", "\(g.maxGraphicsClockMHz) MHz"),
                    .v("Memory", "mem_clock", "\(g.memoryClockMHz) MHz"),
                ]),
            .g(
                "Default Applications Clocks", "default_applications_clocks",
                [
                    .v("Graphics", "graphics_clock", "\(g.maxGraphicsClockMHz) MHz"),
                    .v("Memory", "mem_clock", "\(g.memoryClockMHz) MHz"),
                ]),
            .g(
                "Max Clocks", "max_clocks",
                [
                    .v("Graphics", "graphics_clock", "\(g.maxGraphicsClockMHz) MHz"),
                    .v("SM", "sm_clock", "\(g.maxGraphicsClockMHz) MHz"),
                    .v("Memory", "mem_clock", "\(g.memoryClockMHz) MHz"),
                    .v("Video", "video_clock", "1545 MHz"),
                ]),
            .g("Voltage", "voltage", [.v("Graphics", "graphics_volt", "725.000 mV")]),
            .g("Fabric", "fabric", [.v("State", "state", g.fabricState), .v("Status", "status", g.fabricStatus)]),
            .v("Processes", "processes", "None", .textOnly),
            .v("", "processes", "", .xmlOnly),
            .v("", "accounted_processes", "", .xmlOnly),
        ]
    }

    static func text(_ inv: GPUInventory, gpus: [LabGPU], now: Date) -> String {
        var out = "\n==============NVSMI LOG==============\n\n"
        func line(_ indent: Int, _ label: String, _ value: String?) {
            let pad = String(repeating: " ", count: indent)
            if let value {
                let width = max(colonColumn - indent, label.count + 1)
                out += pad + label.padding(toLength: width, withPad: " ", startingAt: 0) + ": " + value + "\n"
            } else {
                out += pad + label + "\n"
            }
        }
        line(0, "Timestamp", timestamp(now))
        line(0, "Driver Version", inv.driverVersion)
        line(0, "CUDA Version", inv.cudaVersion)
        out += "\n"
        line(0, "Attached GPUs", "\(gpus.count)")
        func walk(_ fields: [QueryField], _ indent: Int) {
            for f in fields where f.form != .xmlOnly {
                if f.children.isEmpty {
                    line(indent, f.label, f.value ?? "")
                } else {
                    line(indent, f.label, nil)
                    walk(f.children, indent + 4)
                }
            }
        }
        for g in gpus {
            out += "GPU \(g.busID)\n"
            walk(tree(g, driver: inv.driverVersion), 4)
            out += "\n"
        }
        return out
    }

    static func xmlEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func xml(_ inv: GPUInventory, gpus: [LabGPU], now: Date) -> String {
        var out =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE nvidia_smi_log SYSTEM \"nvsmi_device_v12.dtd\">\n<nvidia_smi_log>\n"
        out += "    <timestamp>\(timestamp(now))</timestamp>\n"
        out += "    <driver_version>\(xmlEscape(inv.driverVersion))</driver_version>\n"
        out += "    <cuda_version>\(xmlEscape(inv.cudaVersion))</cuda_version>\n"
        out += "    <attached_gpus>\(gpus.count)</attached_gpus>\n"
        func walk(_ fields: [QueryField], _ indent: Int) {
            let pad = String(repeating: " ", count: indent)
            for f in fields where f.form != .textOnly {
                if f.children.isEmpty {
                    let v = f.value ?? ""
                    out += v.isEmpty ? "\(pad)<\(f.tag) />\n" : "\(pad)<\(f.tag)>\(xmlEscape(v))</\(f.tag)>\n"
                } else {
                    out += "\(pad)<\(f.tag)>\n"
                    walk(f.children, indent + 4)
                    out += "\(pad)</\(f.tag)>\n"
                }
            }
        }
        for g in gpus {
            out += "    <gpu id=\"\(g.busID)\">\n"
            walk(tree(g, driver: inv.driverVersion), 8)
            out += "    </gpu>\n"
        }
        out += "</nvidia_smi_log>\n"
        return out
    }
}
