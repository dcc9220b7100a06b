// The WireGuard device's clock unit: every time the core keeps is a whole millisecond.

/**
 * A time on the device's clock in whole ms (the datapath's clock; restored times at most 1 ms early):
 * a fractional time is a heap number in every field that keeps it (16 B each, and one double
 * makes the field a double in every keypair or peer for the process's life); a whole one is a Smi
 * below 2^31 ms (~24 days of uptime).
 */
export function wholeMs(t: number): number {
  return Math.floor(t);
}
