package sensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Record is the last known reading and error of one sensor, kept in
// state.db so status can show them even when the daemon is down.
type Record struct {
	Values    json.RawMessage `json:"values,omitempty"`
	LastRead  time.Time       `json:"last_read"`
	LastError string          `json:"last_error,omitempty"`
	Errors    uint64          `json:"errors"`
}

// recordBucket is the state.db bucket of sensor records, keyed by sensor
// name; part of the on-disk format, never renamed.
const recordBucket = "sensors"

// RecordStore keeps records across restarts: buffer.State in the agent.
type RecordStore interface {
	WriteState(bucket, key string, v []byte) error
	ReadStates(bucket string) map[string][]byte
}

// SaveRecord stores the record of the sensor name (batched by the store).
func SaveRecord(st RecordStore, name string, r Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("sensor %s: record: %w", name, err)
	}
	return st.WriteState(recordBucket, name, v)
}

// LoadRecords returns every sensor's last record. A record that does not
// decode is left out and named in the error.
func LoadRecords(st RecordStore) (map[string]Record, error) {
	out := map[string]Record{}
	var errs []error
	for name, v := range st.ReadStates(recordBucket) {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			errs = append(errs, fmt.Errorf("sensor %s: record in state.db: %w", name, err))
			continue
		}
		out[name] = r
	}
	return out, errors.Join(errs...)
}
