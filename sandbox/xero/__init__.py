"""The Xero sandbox's state, one module per resource; `sandbox.xero_state.XeroSandbox`
joins them."""
