// Carries the precompiled header that every lvrl target reuses.
