"""The link and sign-in service: members link verified social profiles (ProfileLinked)."""
