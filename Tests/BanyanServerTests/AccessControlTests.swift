import BanyanServer
import Foundation
import Testing

struct AccessControlTests {
    @Test func tokensComeFromAFileAndTheEnvironment() throws {
        let path = NSTemporaryDirectory() + "banyan-tokens-\(UUID().uuidString)"
        try "# ops\nr-token read\n\nw-token   write\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let control = try AccessControl.load(file: path, environment: "a-token:admin, r2:read")
        #expect(control.tokens == ["r-token": .read, "w-token": .write, "a-token": .admin, "r2": .read])
        #expect(Role.read < Role.write && Role.write < Role.admin)
        #expect(control.names.isEmpty)
    }

    @Test func tokensMayHaveNamesForTheRecord() throws {
        let path = NSTemporaryDirectory() + "banyan-tokens-\(UUID().uuidString)"
        try "a1 admin ops-oncall\nr1 read\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let control = try AccessControl.load(file: path, environment: "a2:admin:backup-cron")
        #expect(control.tokens == ["a1": .admin, "r1": .read, "a2": .admin])
        #expect(control.names == ["a1": "ops-oncall", "a2": "backup-cron"])
        #expect(throws: AccessError.self) { try AccessControl.load(file: nil, environment: "t:admin:has space") }
        #expect(throws: AccessError.self) { try AccessControl.load(file: nil, environment: "t:admin:" + String(repeating: "n", count: 65)) }
    }

    @Test func malformedTokenConfigurationIsRefusedWithItsLocation() throws {
        let path = NSTemporaryDirectory() + "banyan-tokens-\(UUID().uuidString)"
        try "good read\nbad-line-without-role\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: AccessError.self) { try AccessControl.load(file: path, environment: nil) }
        #expect(throws: AccessError.self) { try AccessControl.load(file: nil, environment: "tok:superuser") }
        #expect(throws: AccessError.self) { try AccessControl.load(file: nil, environment: "no-colon") }
        #expect(try AccessControl.load(file: nil, environment: nil).isEnabled == false)
    }
}
