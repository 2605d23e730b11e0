package main

import (
	"fmt"

	"github.com/edge-agent/edge-agent/sensors"
)

// demoModbus starts the simulated energy meter on Modbus TCP and returns
// its sensor entry for the demo's agent.yaml, so a newcomer sees Modbus
// readings flow and can try a write.
func demoModbus() (sim *sensors.ModbusSim, addr, entry string, err error) {
	sim = sensors.NewModbusSim()
	sim.Live()
	addr, err = sim.ServeTCP(fmt.Sprintf("127.0.0.1:%d", freePort(5020)))
	if err != nil {
		return nil, "", "", fmt.Errorf("modbus sim: %w", err)
	}
	entry = fmt.Sprintf(`  - name: meter
    driver: modbus
    interval: 2s
    url: tcp://%s
    unit_id: 1
    values:
      - {metric: voltage_l1, table: input, address: 0, type: float32, order: CDAB, unit: V}
      - {metric: power_total, table: input, address: 52, type: float32, order: CDAB, unit: W}
      - {metric: energy_total, table: input, address: 342, type: float32, order: CDAB, unit: kWh}
      - {metric: setpoint, table: holding, address: 11, type: int16, scale: 0.1, unit: C, writable: true}
`, addr)
	return sim, addr, entry, nil
}

// modbusBanner is the demo banner's Modbus lines; none without the sim.
func modbusBanner(addr, agentURL string) string {
	if addr == "" {
		return ""
	}
	return fmt.Sprintf("  Modbus TCP meter (simulated)      %s   (docs/MODBUS.md)\n  Write its setpoint:                nats req -s %s cmd.modbus.meter.setpoint '{\"value\": 21.5}'\n", addr, agentURL)
}
