"""The console's pages, one module per screen: sign-in, exception queue, month end, prices,
sync health."""
