-- A claim remembers the exchange request that made it, so that a retry of that request (its
-- answer was lost) gets the same runs back instead of leaving them leased to nobody.
ALTER TABLE leases ADD COLUMN claim_id TEXT;
