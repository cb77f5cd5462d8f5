// Types for scripts/secret-scan.mjs (a plain script, so that run-tests.mjs needs no loader).
export interface ScanHit {
  kind: string;
  label: string;
  offset: number;
}
export interface ScanResult {
  hits: ScanHit[];
  values: number;
  outputs: number;
  bytes: number;
}
export function readIssued(dir: string): Map<string, string>;
export function readOutputs(dir: string): Iterable<{ label: string; allow: Set<string>; text: string }>;
export function scan(dir: string): ScanResult;
export function report(dir: string, log?: (line: string) => void): number;
