// How numbers, sizes and times read on the pages.

const UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

/** Bytes in decimal units: 1.5 MB. */
export function bytes(n: number): string {
  let i = 0;
  let v = n;
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${UNITS[i]}`;
}

/** A Unix time (s) as the reader's local date and time. */
export function time(unix: number): string {
  return new Date(unix * 1000).toLocaleString();
}

/** An amount in the escrow's units, grouped: 1,234,567. */
export function amount(n: number): string {
  return n.toLocaleString("en-US");
}

/** `YYYY-MM` of a date, UTC (accounting periods are UTC months). */
export function monthOf(d: Date): string {
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}
