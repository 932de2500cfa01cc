package contract

import "time"

// PiStats topics, relative to the device root.
const (
	// TopicStats carries the retained JSON snapshot (Stats), QoS 0, with a
	// Message Expiry of about three sampling intervals so that a dead agent's
	// numbers vanish instead of lingering.
	TopicStats = "stats"
	// TopicStatsRefresh asks for a fresh snapshot now. The answer (a
	// StatsResponse) goes to the request's Response Topic and the retained
	// TopicStats is updated too. The request payload is ignored.
	TopicStatsRefresh = "stats/refresh"
	// TopicStatsFlatPrefix starts the optional flat per-metric topics
	// ("stats/cpu_percent", "stats/net_rx_bytes_per_s/eth0"): plain decimal
	// numbers, retained, with the same expiry as TopicStats. When a value
	// becomes unavailable its retained message is cleared (empty payload).
	TopicStatsFlatPrefix = "stats/"
)

// Metric names: the values of the "metrics" config list and the keys of
// Stats.Unavailable.
const (
	MetricSystem      = "system"
	MetricUptime      = "uptime"
	MetricCPU         = "cpu"
	MetricLoad        = "load"
	MetricMemory      = "memory"
	MetricSwap        = "swap"
	MetricDisks       = "disks"
	MetricNet         = "net"
	MetricTemperature = "temperature"
	MetricCPUFreq     = "cpu_freq"
	MetricThrottle    = "throttle"
	MetricWiFi        = "wifi"
	MetricFan         = "fan"
	MetricAgent       = "agent"
)

// StatsMetrics lists every metric name in payload order.
var StatsMetrics = []string{
	MetricSystem, MetricUptime, MetricCPU, MetricLoad, MetricMemory, MetricSwap,
	MetricDisks, MetricNet, MetricTemperature, MetricCPUFreq, MetricThrottle,
	MetricWiFi, MetricFan, MetricAgent,
}

// Throttle sources (StatsThrottle.Source).
const (
	// ThrottleSourceFirmware is the firmware's get_throttled word as the
	// Raspberry Pi kernel exposes it in sysfs (raspberrypi-firmware driver).
	ThrottleSourceFirmware = "firmware"
	// ThrottleSourceHwmon is the rpi_volt hwmon under-voltage alarm
	// (in0_lcrit_alarm); it tells under-voltage only.
	ThrottleSourceHwmon = "hwmon"
)

// Stats is the snapshot published on TopicStats. Every metric key is always
// present: a metric that is disabled in the config or could not be read is
// null, and Unavailable says why under the metric's name (for example
// "temperature": "no thermal zone of type cpu-thermal"). Sub-values that could
// not be read are null with a reason under a dotted key
// ("throttle.now.freq_capped"). Numbers carry their unit in their name:
// _bytes, _bytes_per_s, _percent (0..100), _c (degrees Celsius), _mhz, _rpm,
// _s (seconds), _dbm.
type Stats struct {
	// TS is when the sample was taken.
	TS time.Time `json:"ts"`
	// Seq counts samples since the agent started (1 for the first).
	Seq uint64 `json:"seq"`
	// IntervalS is the configured publishing interval in seconds.
	IntervalS float64 `json:"interval_s"`

	System      *StatsSystem      `json:"system"`
	Uptime      *StatsUptime      `json:"uptime"`
	CPU         *StatsCPU         `json:"cpu"`
	Load        *StatsLoad        `json:"load"`
	Memory      *StatsMemory      `json:"memory"`
	Swap        *StatsMemory      `json:"swap"`
	Disks       []StatsDisk       `json:"disks"`
	Net         []StatsNet        `json:"net"`
	Temperature *StatsTemperature `json:"temperature"`
	CPUFreq     *StatsCPUFreq     `json:"cpu_freq"`
	Throttle    *StatsThrottle    `json:"throttle"`
	WiFi        []StatsWiFi       `json:"wifi"`
	Fan         *StatsFan         `json:"fan"`
	Agent       *StatsAgent       `json:"agent"`

	// Unavailable maps the name of every null metric (or dotted sub-value)
	// to the reason. It is always present; {} when everything was read.
	Unavailable map[string]string `json:"unavailable"`
}

// StatsSystem describes the machine; read once when the module starts.
type StatsSystem struct {
	// Model is the device tree model ("Raspberry Pi 4 Model B Rev 1.4"), or
	// the DMI product name on machines without a device tree.
	Model *string `json:"model"`
	// Serial is the board serial number as the firmware gives it.
	Serial *string `json:"serial"`
	// OS is PRETTY_NAME from os-release.
	OS *string `json:"os"`
	// Kernel is the kernel release (uname -r).
	Kernel *string `json:"kernel"`
}

// StatsUptime is the time since boot.
type StatsUptime struct {
	Seconds float64 `json:"seconds"`
	// BootTime is btime from /proc/stat: now minus uptime on the wall clock,
	// so it moves when the clock is set (a Pi without RTC at first NTP sync).
	BootTime *time.Time `json:"boot_time"`
}

// StatsCPU is CPU utilisation over the window since the previous sample.
type StatsCPU struct {
	// Percent is the busy share of all cores, 0..100.
	Percent float64 `json:"percent"`
	// PerCorePercent holds one 0..100 value per online core, in cpuN order.
	PerCorePercent []float64 `json:"per_core_percent"`
	// Cores is the number of cores that reported times.
	Cores int `json:"cores"`
	// WindowS is the length of the measuring window in seconds.
	WindowS float64 `json:"window_s"`
}

// StatsLoad is the kernel's load average (runnable + uninterruptible tasks).
type StatsLoad struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// StatsMemory is RAM or swap. For RAM, AvailableBytes is MemAvailable (what
// can be used without swapping) and UsedBytes is total minus available; for
// swap, AvailableBytes is SwapFree.
type StatsMemory struct {
	TotalBytes     uint64  `json:"total_bytes"`
	UsedBytes      uint64  `json:"used_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedPercent    float64 `json:"used_percent"`
}

// StatsDisk is the usage of one mounted file system. When it cannot be read
// the numbers are null and Unavailable says why.
type StatsDisk struct {
	Mount          string   `json:"mount"`
	TotalBytes     *uint64  `json:"total_bytes"`
	UsedBytes      *uint64  `json:"used_bytes"`
	AvailableBytes *uint64  `json:"available_bytes"`
	UsedPercent    *float64 `json:"used_percent"`
	Unavailable    string   `json:"unavailable,omitempty"`
}

// StatsNet is the traffic of one network interface (loopback excluded).
// Counters are totals since the interface appeared; rates are over the window
// since the previous sample and null on an interface's first sample or when a
// counter went backwards (interface re-created).
type StatsNet struct {
	Interface        string   `json:"interface"`
	RxBytes          *uint64  `json:"rx_bytes"`
	TxBytes          *uint64  `json:"tx_bytes"`
	RxBytesPerSecond *float64 `json:"rx_bytes_per_s"`
	TxBytesPerSecond *float64 `json:"tx_bytes_per_s"`
	Unavailable      string   `json:"unavailable,omitempty"`
}

// StatsTemperature is the SoC temperature.
type StatsTemperature struct {
	SoCCelsius float64 `json:"soc_c"`
	// Zone is the type of the thermal zone read ("cpu-thermal" on a Pi).
	Zone string `json:"zone"`
}

// StatsCPUFreq is the CPU clock the kernel requested (cpufreq
// scaling_cur_freq). On a Pi the firmware may run the cores slower than this
// when it caps or throttles; see Throttle for that.
type StatsCPUFreq struct {
	// MHz is the highest current frequency among the cores.
	MHz float64 `json:"mhz"`
	// PerCoreMHz holds one value per core that has cpufreq, in cpuN order.
	PerCoreMHz []float64 `json:"per_core_mhz"`
}

// StatsThrottle is the Raspberry Pi firmware's throttling and under-voltage
// state, decoded.
type StatsThrottle struct {
	// Source says where it was read: ThrottleSourceFirmware or
	// ThrottleSourceHwmon.
	Source string `json:"source"`
	// Raw is the firmware word in hex ("0x50005"); null for hwmon.
	Raw *string `json:"raw"`
	// Now is the state at the time of reading (bits 0..3).
	Now ThrottleFlags `json:"now"`
	// SinceBoot says what has happened since boot: the firmware's sticky
	// bits (16..19) OR-ed with everything the agent saw since WatchedSince.
	// The kernel's own poll clears the firmware's sticky bits, so the agent
	// keeps the history itself (persisted per boot in its state directory).
	SinceBoot ThrottleFlags `json:"since_boot"`
	// WatchedSince is when the agent began watching during this boot.
	WatchedSince time.Time `json:"watched_since"`
}

// ThrottleFlags are the named get_throttled conditions. A null flag is one
// the source cannot tell (the hwmon source tells under-voltage only).
type ThrottleFlags struct {
	// UnderVoltage: supply below about 4.63 V (bit 0 / 16).
	UnderVoltage *bool `json:"under_voltage"`
	// FreqCapped: ARM frequency capped (bit 1 / 17).
	FreqCapped *bool `json:"freq_capped"`
	// Throttled: currently throttled (bit 2 / 18).
	Throttled *bool `json:"throttled"`
	// SoftTempLimit: soft temperature limit active (bit 3 / 19).
	SoftTempLimit *bool `json:"soft_temp_limit"`
}

// StatsWiFi is the signal of one wireless interface (/proc/net/wireless).
type StatsWiFi struct {
	Interface string `json:"interface"`
	// SignalDBm is the signal level in dBm.
	SignalDBm float64 `json:"signal_dbm"`
	// LinkQuality is the driver's link quality (0..70 for cfg80211 drivers).
	LinkQuality float64 `json:"link_quality"`
}

// StatsFan is a fan's speed (Raspberry Pi 5 cooling fan, hwmon pwmfan).
type StatsFan struct {
	RPM float64 `json:"rpm"`
	// PWMPercent is the fan drive duty 0..100; null when not exposed.
	PWMPercent *float64 `json:"pwm_percent"`
	// Hwmon is the name of the hwmon device read ("pwmfan").
	Hwmon string `json:"hwmon"`
}

// StatsAgent is the agent's own cost.
type StatsAgent struct {
	RSSBytes uint64 `json:"rss_bytes"`
	// CPUPercent is the agent's CPU time over the window as a share of one
	// core, 0..100 x cores; null on the first sample.
	CPUPercent *float64 `json:"cpu_percent"`
}

// StatsResponse answers a TopicStatsRefresh request.
type StatsResponse struct {
	Response
	Stats *Stats `json:"stats,omitempty"`
}
