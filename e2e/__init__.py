"""Browser tests: real Chromium driven by Playwright."""
