"""The remediation runtime nebulad runs: alerts from every source (`alerts`), the incidents
they open and their timelines (`incidents`), silences (`silences`)."""
