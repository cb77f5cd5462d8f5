/**
 * A manager's ManualClock with the test bed's authorization server moved along: "an hour later"
 * happens for both (the server's Date header and token timestamps), or it would read as an hour
 * of clock skew.
 */
import { ManualClock } from "../../src/core/clock.js";
import type { TestBed } from "../bed/index.js";

export class SharedManualClock extends ManualClock {
  constructor(
    start: number,
    private readonly bed: () => TestBed,
  ) {
    super(start);
  }
  override async advance(ms: number): Promise<void> {
    this.bed().as.setClockOffset(this.now() + ms - Date.now());
    await super.advance(ms);
  }
}
