/** The package version, for `--version` and for configurations that name a published release. */
export const VERSION = "0.1.0";
