SELECT message_id, role, content, tokens, cost, tool_calls, created_at
  FROM pgmarket.chat_messages
 WHERE session_id = '00000000-0000-4000-9000-000000000000'
 ORDER BY message_id DESC LIMIT 50;
