"""Package data of the embedded default: foundation weights, their recipe and log, a demo clip (see README.md)."""
