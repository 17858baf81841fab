-- the same page as get_chat_history returns, read by the primary key of a
-- plain table (the same columns; cost stays micro-credits, not numeric)
SELECT message_id, role, content, tokens, cost, tool_calls, created_at,
       model_id, message_uuid
  FROM pgmarket.chat_messages
 WHERE session_id = '00000000-0000-4000-9000-000000000000'
 ORDER BY message_id DESC LIMIT 50;
