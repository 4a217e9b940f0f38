-- load_users pages through a domain's users by id; without this index the
-- planner sorted the whole domain for every page.
CREATE INDEX users_domain_id ON users(domain_id, id);
