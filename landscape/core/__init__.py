"""The ground floor: errors, device and threads, parameters as a flat vector, losses, data, models,
training as a generator of step events, and the one background job. Nothing here imports another wing."""
