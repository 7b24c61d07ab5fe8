-- Outbound webhook snapshots carry their real links, written when they are owed (issue 23).
-- A message owed before this had its links written against the placeholder
-- `settle-public-url` (the public URL is a setting, which SQL cannot know): such rows are
-- marked here, and the worker writes the public URL into the links of those alone as it
-- sends them (jobs.effects.Webhook). Rows of every status: an operator may retry a failed one.
update outbox set payload = payload || '{"links_to_resolve": true}'
where kind = 'webhook' and strpos((payload -> 'data')::text, '"settle-public-url/') > 0;
